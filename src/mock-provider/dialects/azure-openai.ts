import type { FastifyRequest } from 'fastify';
import type { MockDialect } from '../dialect.js';
import { openAIDialect, parseChatCompletions } from './openai.js';

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
};
