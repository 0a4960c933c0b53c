import type { Usage } from '../../store/job-record.js';
import { badResponse, classifyStatus, type ProviderError } from '../errors.js';
import type { ChatRequest, HttpAnswer, HttpRequest, ProviderAdapter } from '../types.js';
import { toGeminiRequest } from './request.js';
import { toCompletion } from './response.js';
import { geminiStream } from './stream.js';
import type { GeminiResponse, GoogleErrorBody } from './types.js';

export interface GeminiAdapterOptions {
  /** e.g. https://generativelanguage.googleapis.com/v1beta */
  baseUrl: string;
  apiKey?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/** "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)." */
const INPUT_TOO_LONG = /input token count.*exceeds the maximum/i;

/**
 * The `gemini` wire format: Google's Gemini API, `models.generateContent`. Requests are translated
 * from OpenAI's chat-completions shape and answers back into a chat.completion. The key goes in
 * the x-goog-api-key header, never the `?key=` query, so it stays out of URLs and logs.
 */
export function geminiAdapter(opts: GeminiAdapterOptions): ProviderAdapter {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.apiKey) headers['x-goog-api-key'] = opts.apiKey;
  const buildRequest = (request: ChatRequest, model: string): HttpRequest => {
    const { body, dropped } = toGeminiRequest(request);
    // Google's own names are `models/<id>`; accept either spelling in the config.
    const id = encodeURIComponent(model.replace(/^models\//, ''));
    return { url: `${base}/models/${id}:generateContent`, headers, body: JSON.stringify(body), ...(dropped.length > 0 && { dropped }) };
  };
  return {
    buildRequest,
    stream: geminiStream(buildRequest),
    parseSuccess(answer: HttpAnswer, model) {
      const body = answer.body as GeminiResponse | undefined;
      const completion = body && typeof body === 'object' ? toCompletion(body, model) : null;
      if (!completion) return { ok: false, error: badResponse('Gemini answered without candidates or a block reason', answer.status) };
      return { ok: true, completion, usage: (completion.usage as Usage | undefined) ?? null };
    },
    classifyError: classifyGeminiError,
  };
}

export function classifyGeminiError(answer: HttpAnswer): ProviderError {
  const err = (answer.body as GoogleErrorBody | undefined)?.error;
  const message = typeof err?.message === 'string' ? err.message : undefined;
  const detail = { ...(message !== undefined && { message }), ...(INPUT_TOO_LONG.test(message ?? '') && { code: 'context_length_exceeded' }) };
  // Google answers a bad key with 400 (reason API_KEY_INVALID) and a billing or region refusal with
  // 400 FAILED_PRECONDITION: both are this account failing, not the request, so they count as auth.
  const accountRefused = err?.status === 'FAILED_PRECONDITION' || err?.details?.some((d) => d.reason === 'API_KEY_INVALID');
  if (answer.status === 400 && accountRefused) return { ...classifyStatus(403, detail), status: 400 };
  return classifyStatus(answer.status, detail, answer.headers['retry-after'] ?? retryDelay(err?.details));
}

/** Gemini's 429s say when to come back in a google.rpc.RetryInfo detail ("22s") rather than a header. */
function retryDelay(details: NonNullable<GoogleErrorBody['error']>['details']): string | undefined {
  const delay = details?.find((d) => d['@type']?.endsWith('google.rpc.RetryInfo'))?.retryDelay;
  return delay?.match(/^(\d+(?:\.\d+)?)s$/)?.[1];
}
