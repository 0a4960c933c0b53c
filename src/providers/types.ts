import type { Usage } from '../store/job-record.js';
import type { ProviderError } from './errors.js';

/** An OpenAI chat-completions body without `model`: what every job carries, whichever provider runs it. */
export type ChatRequest = Record<string, unknown> & { messages: unknown[] };

/** An OpenAI `chat.completion` object: what every job returns, whichever provider answered. */
export type ChatCompletion = Record<string, unknown> & { object: 'chat.completion'; choices: unknown[] };

export interface HttpRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  /**
   * Request parameters this wire format cannot honour and did not send, with why; they go into the
   * attempt's ledger entry so nothing changes meaning silently.
   */
  dropped?: string[];
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  body: unknown;
}

export type ProviderResult = (
  | { ok: true; completion: ChatCompletion; usage: Usage | null }
  | { ok: false; error: ProviderError }
) & { dropped?: string[] };

/**
 * One wire format. Adapters only translate; the shared caller does the HTTP, timeouts and
 * transport errors, so a new provider is one new folder implementing these three functions.
 * `buildRequest` may be async for formats that sign the finished request (SigV4).
 */
export interface ProviderAdapter {
  buildRequest(request: ChatRequest, model: string): HttpRequest | Promise<HttpRequest>;
  /** A 2xx answer into an OpenAI chat.completion (or a bad_response error). */
  parseSuccess(answer: HttpAnswer, model: string): ProviderResult;
  /** A non-2xx answer into the taxonomy. */
  classifyError(answer: HttpAnswer): ProviderError;
}
