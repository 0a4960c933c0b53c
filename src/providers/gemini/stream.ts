import { randomBytes } from 'node:crypto';
import { badResponse, type ProviderError } from '../errors.js';
import { sseDecoder } from '../sse-decoder.js';
import type { ChatChunk, ChatRequest, HttpRequest, StreamDecoder, StreamingAdapter, StreamStep } from '../types.js';
import { classifyGeminiError } from './adapter.js';
import { blockedChoice, finishReason, toToolCall, toUsage } from './response.js';
import type { GeminiCandidate, GeminiResponse, GeminiUsageMetadata, GoogleErrorBody } from './types.js';

type StreamEvent = GeminiResponse & GoogleErrorBody;

/**
 * Gemini's `models.streamGenerateContent` with `alt=sse`: each `data:` event is a partial
 * GenerateContentResponse (the same shape generateContent answers with, holding only what is
 * new), and without `alt=sse` Google streams one JSON array instead, which this does not read.
 * Usage needs no flag: every event carries the running usageMetadata, the last one the totals.
 * There is no end-of-stream event: the body ends after the event whose candidate has a
 * finishReason, so that is what a finished stream is. An error after the stream began arrives as
 * `data: {"error": {code, message, status}}`, a google.rpc.Status like any refused call's.
 */
export function geminiStream(buildRequest: (request: ChatRequest, model: string) => HttpRequest): StreamingAdapter {
  return {
    buildStreamRequest(request, model) {
      // Streaming is this endpoint, and usage always comes: neither field is a parameter Gemini ignored.
      const { stream: _stream, stream_options: _options, ...rest } = request;
      const call = buildRequest(rest as ChatRequest, model);
      const url = call.url.replace(/:generateContent$/, ':streamGenerateContent?alt=sse');
      if (url === call.url) throw new Error(`not a generateContent URL: ${call.url}`);
      return { ...call, url, headers: { ...call.headers, accept: 'text/event-stream' } };
    },
    decoder: () => geminiDecoder(),
  };
}

interface CandidateState {
  /** The role delta went out. */
  opened: boolean;
  /** Function calls so far: the next one's index among this candidate's tool calls. */
  calls: number;
  finished: boolean;
}

function geminiDecoder(): StreamDecoder {
  // As the non-streaming answer does, tool call ids come from the response id, made up if Gemini sends none.
  const madeUpId = randomBytes(12).toString('base64url');
  let responseId: string | undefined;
  const candidates = new Map<number, CandidateState>();
  let finished = false;
  let failed = false;
  let usage: GeminiUsageMetadata | undefined;

  const candidateChunks = (candidate: GeminiCandidate, index: number): ChatChunk[] => {
    const state = candidates.get(index) ?? { opened: false, calls: 0, finished: false };
    candidates.set(index, state);
    const parts = candidate.content?.parts ?? [];
    const delta: Record<string, unknown> = {};
    if (!state.opened) {
      delta.role = 'assistant';
      state.opened = true;
    }
    // Thought parts are the model's reasoning summary, not its answer (as in response.ts).
    const text = parts
      .filter((p) => typeof p.text === 'string' && !p.thought)
      .map((p) => p.text)
      .join('');
    if (text !== '') delta.content = text;
    // Gemini sends a function call whole, so one delta carries its id, name and all its arguments.
    const calls = parts
      .filter((p) => p.functionCall)
      .map((p) => {
        const at = state.calls++;
        return { index: at, ...toToolCall(p, at, responseId ?? madeUpId) };
      });
    if (calls.length > 0) delta.tool_calls = calls;
    const chunks: ChatChunk[] = [];
    if (Object.keys(delta).length > 0) chunks.push({ choices: [{ index, delta, finish_reason: null }] });
    if (candidate.finishReason && !state.finished) {
      state.finished = true;
      finished = true;
      chunks.push({ choices: [{ index, delta: {}, finish_reason: finishReason(candidate.finishReason, state.calls > 0) }] });
    }
    return chunks;
  };

  const onEvent = (data: string): StreamStep => {
    let body: StreamEvent;
    try {
      body = JSON.parse(data) as StreamEvent;
    } catch {
      return { chunks: [], error: badResponse('Gemini sent a stream event that is not JSON') };
    }
    if (!body || typeof body !== 'object') return { chunks: [], error: badResponse('Gemini sent a stream event that is not an object') };
    if (body.error) return { chunks: [], error: streamError(body.error) };
    responseId ??= body.responseId;
    if (body.usageMetadata) usage = body.usageMetadata;
    const chunks = (body.candidates ?? []).flatMap((c, position) => candidateChunks(c, c.index ?? position));
    const blockReason = body.promptFeedback?.blockReason;
    if (blockReason && candidates.size === 0 && !finished) {
      // A blocked prompt is an answer, as in the non-streaming call: the refusal, then content_filter.
      const blocked = blockedChoice(blockReason);
      finished = true;
      chunks.push(
        { choices: [{ index: 0, delta: { role: 'assistant', content: null, refusal: blocked.message.refusal }, finish_reason: null }] },
        { choices: [{ index: 0, delta: {}, finish_reason: blocked.finish_reason }] },
      );
    }
    return { chunks };
  };

  // Never `done` for sseDecoder: Gemini has no end event, so only the body's end says the answer is whole.
  const inner = sseDecoder((event) => {
    const step = onEvent(event.data);
    if (step.error) failed = true;
    return step;
  });
  return {
    push(bytes) {
      const step = inner.push(bytes);
      if (step.error) failed = true;
      return step;
    },
    end() {
      const step = inner.end();
      // Having nothing ever `done`, sseDecoder calls every end cut off; after a finishReason, with
      // no error before, that is how a whole Gemini stream ends, and the usage so far is its total.
      if (failed || !finished) return step;
      const last: ChatChunk[] = usage ? [{ choices: [], usage: toUsage(usage) as unknown as Record<string, unknown> }] : [];
      return { chunks: [...step.chunks, ...last] };
    },
  };
}

/**
 * An error event carries the HTTP status the call would have had (`code`) and its google.rpc
 * status, so it is classified as that refusal would be (RetryInfo, a key or billing refusal and
 * all), but without a status of its own: the stream's answer was a 200.
 */
function streamError(err: NonNullable<GoogleErrorBody['error']>): ProviderError {
  const status = typeof err.code === 'number' && err.code >= 400 && err.code < 600 ? err.code : 500;
  const message = typeof err.message === 'string' && err.message !== '' ? err.message : 'Gemini sent an error in its stream';
  const { status: _none, ...error } = classifyGeminiError({ status, headers: {}, body: { error: { ...err, message } } });
  return error;
}
