import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { badResponse } from './errors.js';
import type { StreamDecoder, StreamStep } from './types.js';

/** No event of a chat stream comes near this; a provider sending more without an event end is broken. */
const MAX_EVENT_CHARS = 8 * 1024 * 1024;

/**
 * A StreamDecoder for the formats that stream as Server-Sent Events (OpenAI, Azure, Anthropic,
 * Gemini's `alt=sse`): the SSE framing is eventsource-parser's; `onEvent` turns each event into
 * chunks, and says with `done` when the provider has said it is finished. A body that ends before
 * that was cut off.
 */
export function sseDecoder(onEvent: (event: EventSourceMessage) => StreamStep & { done?: boolean }): StreamDecoder {
  const text = new TextDecoder();
  let done = false;
  let step: StreamStep = { chunks: [] };
  let broken: string | undefined;
  const parser = createParser({
    maxBufferSize: MAX_EVENT_CHARS,
    onEvent(event) {
      if (done || step.error) return;
      const out = onEvent(event);
      step.chunks.push(...out.chunks);
      if (out.error) step.error = out.error;
      if (out.done) done = true;
    },
    onError(err) {
      if (err.type === 'max-buffer-size-exceeded') broken = 'the provider sent a stream event over 8 MiB';
    },
  });
  const take = (): StreamStep => {
    const out = step;
    step = { chunks: [] };
    if (broken && !out.error) out.error = badResponse(broken);
    return out;
  };
  return {
    push(bytes) {
      if (!broken && !done) parser.feed(text.decode(bytes, { stream: true }));
      return take();
    },
    end() {
      if (!broken && !done) parser.feed(`${text.decode()}\n\n`);
      const out = take();
      if (!done && !out.error) out.error = badResponse('the stream ended before the provider finished its answer');
      return out;
    },
  };
}
