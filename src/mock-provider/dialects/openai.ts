import type { FastifyRequest } from 'fastify';
import { countTokens, jsonPieces, type MockAnswer, type MockCall, type MockDialect, type MockStream, sse, textPieces } from '../dialect.js';

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  429: 'rate_limit_error',
};

type Message = { role?: string; content?: unknown };

function text(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p?.text === 'string' ? p.text : '')).join(' ');
  return '';
}

/** Reads an OpenAI chat-completions body; `model` comes from the body or, for Azure, the deployment in the path. */
export function parseChatCompletions(body: Record<string, unknown>, model: unknown): MockCall | { invalid: string } {
  if (typeof model !== 'string' || model === '') return { invalid: 'you must provide a model parameter' };
  const messages = body.messages as Message[] | undefined;
  if (!Array.isArray(messages) || messages.length === 0) return { invalid: "'messages' must be a non-empty array" };
  const last = messages.at(-1)!;
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const tools = Array.isArray(body.tools) ? (body.tools as { function?: { name?: string } }[]).map((t) => ({ name: String(t.function?.name ?? '') })) : [];
  const format = (body.response_format as { type?: string } | undefined)?.type;
  return {
    model,
    userText: text(lastUser?.content),
    toolResult: last.role === 'tool' ? text(last.content) : null,
    promptTokens: countTokens(JSON.stringify(messages)),
    maxTokens: body.max_completion_tokens ?? body.max_tokens ? Number(body.max_completion_tokens ?? body.max_tokens) : null,
    tools,
    toolsDisabled: body.tool_choice === 'none',
    wantsJson: format === 'json_object' || format === 'json_schema',
  };
}

/**
 * The answer as OpenAI streams it: a role delta first, the text (or a tool call's name, then its
 * arguments in fragments) in pieces, a chunk with the finish reason, then with `include_usage` a
 * chunk of usage and no choices, and `[DONE]`. Every chunk carries `usage: null` when usage was asked for.
 */
export function openAIStreamFrames(call: MockCall, a: MockAnswer, id: string, includeUsage: boolean): MockStream {
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: `chatcmpl-mock-${id}`,
    object: 'chat.completion.chunk',
    created,
    model: call.model,
    system_fingerprint: 'fp_mock',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(includeUsage && { usage: null }),
  });
  const frames = [sse(chunk({ role: 'assistant', content: a.toolCall ? null : '', refusal: null }))];
  if (a.toolCall) {
    frames.push(sse(chunk({ tool_calls: [{ index: 0, id: a.toolCall.id, type: 'function', function: { name: a.toolCall.name, arguments: '' } }] })));
    for (const part of jsonPieces(JSON.stringify(a.toolCall.arguments))) frames.push(sse(chunk({ tool_calls: [{ index: 0, function: { arguments: part } }] })));
  } else {
    for (const piece of textPieces(a.text)) frames.push(sse(chunk({ content: piece })));
  }
  frames.push(sse(chunk({}, a.finish)));
  if (includeUsage) {
    const usage = { prompt_tokens: a.promptTokens, completion_tokens: a.completionTokens, total_tokens: a.promptTokens + a.completionTokens, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } };
    frames.push(sse({ ...chunk({}), choices: [], usage }));
  }
  frames.push(sse('[DONE]'));
  return { contentType: 'text/event-stream; charset=utf-8', frames };
}

const includesUsage = (req: FastifyRequest) => ((req.body as { stream_options?: { include_usage?: boolean } } | undefined)?.stream_options?.include_usage ?? false) === true;

export const openAIStreams = (req: FastifyRequest) => (req.body as { stream?: unknown } | undefined)?.stream === true;

/** OpenAI's shape for an error once a stream has begun. */
export const openAIStreamError = (message: string) => sse({ error: { message, type: 'server_error', param: null, code: null } });

export { includesUsage };

export const openAIDialect: MockDialect = {
  name: 'openai',
  path: '/v1/chat/completions',
  authorized: (req, key) => req.headers.authorization === `Bearer ${key}`,
  parse: (req: FastifyRequest) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    return parseChatCompletions(body, body.model);
  },
  render(call, a, id) {
    const message: Record<string, unknown> = { role: 'assistant', content: a.toolCall ? null : a.text, refusal: null };
    if (a.toolCall) {
      message.tool_calls = [{ id: a.toolCall.id, type: 'function', function: { name: a.toolCall.name, arguments: JSON.stringify(a.toolCall.arguments) } }];
    }
    return {
      id: `chatcmpl-mock-${id}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: call.model,
      system_fingerprint: 'fp_mock',
      choices: [{ index: 0, message, logprobs: null, finish_reason: a.finish }],
      usage: {
        prompt_tokens: a.promptTokens,
        completion_tokens: a.completionTokens,
        total_tokens: a.promptTokens + a.completionTokens,
        prompt_tokens_details: { cached_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0 },
      },
    };
  },
  streams: openAIStreams,
  renderStream: (call, a, id, req) => openAIStreamFrames(call, a, id, includesUsage(req)),
  streamError: openAIStreamError,
  error(status, message, kind) {
    const code = kind === 'auth' ? 'invalid_api_key' : kind === 'rate_limit' ? 'rate_limit_exceeded' : null;
    return {
      body: { error: { message, type: ERROR_TYPES[status] ?? 'server_error', param: null, code } },
      ...(kind === 'rate_limit' && { headers: { 'x-ratelimit-remaining-requests': '0' } }),
    };
  },
};
