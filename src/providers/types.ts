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
 * One piece of an OpenAI `chat.completion.chunk`, as a stream decoder makes it from its provider's
 * events: `choices` with their `delta`s and `finish_reason`s, and `usage` on the last. The broker
 * stamps `id`, `object`, `created` and `model` itself, the same on every chunk of a job.
 */
export type ChatChunk = Record<string, unknown> & { choices: StreamChoice[]; usage?: Record<string, unknown> | null };

export interface StreamChoice {
  index: number;
  delta: Record<string, unknown>;
  finish_reason?: string | null;
  logprobs?: unknown;
}

/** What a decoder made of the bytes it was given: the chunks they completed, and an error the provider sent mid-stream. */
export interface StreamStep {
  chunks: ChatChunk[];
  error?: ProviderError;
}

/**
 * Turns one provider's streaming body into OpenAI chunks, a piece at a time. Bytes may split an
 * event anywhere; the decoder holds what is incomplete. `end` is called when the body ends: an
 * answer that stopped before the provider said it was finished is an error there.
 */
export interface StreamDecoder {
  push(bytes: Uint8Array): StreamStep;
  end(): StreamStep;
}

/** A wire format's streaming endpoint (each adapter's `stream.ts`). */
export interface StreamingAdapter {
  buildStreamRequest(request: ChatRequest, model: string): HttpRequest | Promise<HttpRequest>;
  decoder(model: string): StreamDecoder;
}

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
  /** Its streaming endpoint: chunks as the provider writes them. */
  stream: StreamingAdapter;
}
