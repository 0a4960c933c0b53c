import { classifyStreamError } from '../errors.js';
import { sseDecoder } from '../sse-decoder.js';
import type { ChatChunk, ChatRequest, HttpRequest, StreamingAdapter } from '../types.js';
import { openAIErrorDetail } from './adapter.js';

/**
 * OpenAI's streaming chat completions (and every service of its format): `data:` events of
 * `chat.completion.chunk`, ending `data: [DONE]`. Usage is always asked for (it is what the job
 * costs); whether the caller sees it is the front door's business. An error mid-stream arrives as
 * `data: {"error": {...}}`.
 */
export function openAIStream(buildRequest: (request: ChatRequest, model: string) => HttpRequest): StreamingAdapter {
  return {
    buildStreamRequest(request, model) {
      const call = buildRequest({ ...request, stream: true, stream_options: { ...(request.stream_options as object | undefined), include_usage: true } }, model);
      return { ...call, headers: { ...call.headers, accept: 'text/event-stream' } };
    },
    decoder: () =>
      sseDecoder((event) => {
        if (event.data === '[DONE]') return { chunks: [], done: true };
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(event.data) as Record<string, unknown>;
        } catch {
          return { chunks: [], error: classifyStreamError({ message: 'the provider sent a stream event that is not JSON', code: 'bad_response' }) };
        }
        if (body.error) return { chunks: [], error: classifyStreamError(openAIErrorDetail(body)) };
        const choices = Array.isArray(body.choices) ? (body.choices as ChatChunk['choices']) : [];
        // Azure opens with a chunk of content-filter results and no choices: nothing for the caller.
        if (choices.length === 0 && !body.usage) return { chunks: [] };
        const chunk: ChatChunk = { choices };
        if (body.usage) chunk.usage = body.usage as Record<string, unknown>;
        if (typeof body.system_fingerprint === 'string') chunk.system_fingerprint = body.system_fingerprint;
        return { chunks: [chunk] };
      }),
  };
}
