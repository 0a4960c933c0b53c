import type { FastifyRequest } from 'fastify';
import type { MockDialect } from '../dialect.js';
import { includesUsage, openAIDialect, openAIStreamError, openAIStreamFrames, openAIStreams, parseChatCompletions } from './openai.js';
import { sse } from '../dialect.js';

/** Azure OpenAI: OpenAI bodies and errors under a deployment path, `api-key` auth, a required `api-version`. */
export const azureOpenAIDialect: MockDialect = {
  name: 'azure-openai',
  path: '/openai/deployments/:deployment/chat/completions',
  authorized: (req, key) => req.headers['api-key'] === key,
  parse(req: FastifyRequest) {
    const { deployment } = req.params as { deployment: string };
    if (!(req.query as { 'api-version'?: string })['api-version']) return { invalid: 'Missing required query parameter: api-version' };
    return parseChatCompletions((req.body ?? {}) as Record<string, unknown>, deployment);
  },
  render: (call, answer, id) => ({
    ...(openAIDialect.render(call, answer, id) as object),
    prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }],
  }),
  error: (status, message, kind) => openAIDialect.error(status, message, kind),
  streams: openAIStreams,
  // Azure opens its streams with a chunk of content-filter results and no choices.
  renderStream(call, a, id, req) {
    const stream = openAIStreamFrames(call, a, id, includesUsage(req));
    const filter = { id: '', object: '', created: 0, model: '', choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] };
    return { ...stream, frames: [sse(filter), ...stream.frames] };
  },
  streamError: openAIStreamError,
};
