import { badResponse, classifyStatus } from '../errors.js';
import type { ChatRequest, HttpRequest, ProviderAdapter } from '../types.js';
import { anthropicStream } from './stream.js';
import { isMessage, toChatCompletion, toMessagesRequest } from './translate.js';

export interface AnthropicAdapterOptions {
  /** Where the API lives, without `/v1`: `https://api.anthropic.com`. */
  baseUrl: string;
  apiKey?: string | undefined;
  /** The `anthropic-version` header. */
  version?: string | undefined;
  headers?: Record<string, string> | undefined;
}

export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

// "input length and `max_tokens` exceed context limit: ..." is Anthropic's other context overflow,
// and the shared patterns miss it.
const CONTEXT_LIMIT = /exceed context limit/i;

/** Pulls `{message, code}` out of an Anthropic `{"type": "error", "error": {type, message}}` body. */
export function anthropicErrorDetail(body: unknown): { message?: string; code?: string } {
  const err = (body as { error?: unknown } | undefined)?.error;
  if (!err || typeof err !== 'object') return {};
  const { message, type } = err as Record<string, unknown>;
  const text = typeof message === 'string' ? message : undefined;
  const code = text && CONTEXT_LIMIT.test(text) ? 'context_length_exceeded' : typeof type === 'string' ? type : undefined;
  return { ...(text !== undefined && { message: text }), ...(code !== undefined && { code }) };
}

/** The Anthropic Messages API (`POST /v1/messages`), translated to and from OpenAI chat completions. */
export function anthropicAdapter(opts: AnthropicAdapterOptions): ProviderAdapter {
  const url = `${opts.baseUrl.replace(/\/+$/, '')}/v1/messages`;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'anthropic-version': opts.version ?? DEFAULT_ANTHROPIC_VERSION,
    ...opts.headers,
  };
  if (opts.apiKey) headers['x-api-key'] = opts.apiKey;
  const buildRequest = (request: ChatRequest, model: string): HttpRequest => {
    const { body, dropped } = toMessagesRequest(request, model);
    return { url, headers, body: JSON.stringify(body), ...(dropped.length > 0 && { dropped }) };
  };
  return {
    buildRequest,
    stream: anthropicStream(buildRequest),
    parseSuccess(answer, model) {
      if (!isMessage(answer.body)) return { ok: false, error: badResponse('the provider answered without a message', answer.status) };
      return { ok: true, ...toChatCompletion(answer.body, model) };
    },
    classifyError(answer) {
      return classifyStatus(answer.status, anthropicErrorDetail(answer.body), answer.headers['retry-after']);
    },
  };
}
