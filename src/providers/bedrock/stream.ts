import { crc32 } from 'node:zlib';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { isObj, type Obj } from '../openai-request.js';
import { badResponse, type ProviderError } from '../errors.js';
import type { ChatChunk, StreamDecoder, StreamingAdapter, StreamStep } from '../types.js';
import { classifyBedrockError, type BuildConverse } from './adapter.js';
import { finishReason, usageOf } from './translate.js';

/**
 * Bedrock's ConverseStream: `POST /model/{modelId}/converse-stream`, the same body as Converse,
 * answered in AWS's binary event-stream encoding (`application/vnd.amazon.eventstream`). Each
 * message is one event (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata) or an
 * exception; the answer is finished with the metadata event, which carries the usage (always sent,
 * so nothing needs asking for). Reference:
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
 */
export function bedrockStream(build: BuildConverse): StreamingAdapter {
  return {
    buildStreamRequest(request, model) {
      // The path says it streams; Converse knows neither field and would otherwise report them dropped.
      const { stream: _stream, stream_options: _options, ...rest } = request;
      return build(rest, model, STREAM_ENDPOINT);
    },
    decoder: () => converseStreamDecoder(),
  };
}

const STREAM_ENDPOINT = { operation: 'converse-stream', headers: { accept: 'application/vnd.amazon.eventstream' } };

/** 4 bytes of total length, 4 of headers length, 4 of prelude CRC. */
const PRELUDE_BYTES = 12;
/** The prelude, the two CRCs: a message with no headers and no payload. */
const MIN_MESSAGE_BYTES = 16;
/** The most AWS's event-stream implementations let one message be; a larger length is a corrupt prelude. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const utf8 = new TextDecoder();
const codec = new EventStreamCodec((bytes) => utf8.decode(bytes), (text) => new TextEncoder().encode(text));

/**
 * Cuts an event-stream body into whole messages, however its bytes were split. The prelude's CRC
 * is checked as soon as it is in, so a corrupt length is caught at once instead of being waited for.
 */
class Framer {
  private parts: Uint8Array[] = [];
  private size = 0;
  /** The length of the message being gathered, once its prelude has been read. */
  private length: number | undefined;

  get holding(): boolean {
    return this.size > 0;
  }

  /** The messages these bytes completed, and what is wrong with a prelude no well-formed stream has. */
  push(bytes: Uint8Array): { messages: Uint8Array[]; broken?: string } {
    if (bytes.byteLength > 0) {
      this.parts.push(bytes);
      this.size += bytes.byteLength;
    }
    const messages: Uint8Array[] = [];
    while (this.size >= (this.length ?? PRELUDE_BYTES)) {
      // Joined only once a whole prelude or message is in: one byte at a time stays linear.
      const buffer = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
      this.parts = [buffer];
      if (this.length === undefined) {
        const length = preludeLength(buffer);
        if (typeof length === 'string') return { messages, broken: length };
        this.length = length;
        continue;
      }
      messages.push(buffer.subarray(0, this.length));
      const rest = buffer.subarray(this.length);
      this.parts = rest.byteLength > 0 ? [rest] : [];
      this.size = rest.byteLength;
      this.length = undefined;
    }
    return { messages };
  }
}

/** The message's length, or why its prelude cannot be right. */
function preludeLength(buffer: Uint8Array): number | string {
  const view = new DataView(buffer.buffer, buffer.byteOffset, PRELUDE_BYTES);
  const length = view.getUint32(0);
  const headers = view.getUint32(4);
  if (crc32(buffer.subarray(0, 8)) !== view.getUint32(8)) return 'its prelude checksum does not match';
  if (length < MIN_MESSAGE_BYTES || length > MAX_MESSAGE_BYTES || headers > length - MIN_MESSAGE_BYTES) {
    return `its prelude gives a length of ${length} bytes with ${headers} of headers`;
  }
  return length;
}

/** The status each exception is classified at: the one AWS documents for it, except as noted. */
const STREAM_EXCEPTION_STATUS: Record<string, number> = {
  ValidationException: 400,
  ThrottlingException: 429,
  InternalServerException: 500,
  ServiceUnavailableException: 503,
  // Documented as 424, which reads as the request's fault; it is the model failing mid-answer.
  ModelStreamErrorException: 500,
};

/**
 * An exception sent inside the stream, classified as classifyBedrockError classifies the same
 * exception answered before it (context-length wording included). The stream names exceptions in
 * lower camel case (`throttlingException`), the HTTP header in upper.
 */
function streamException(type: string, message: string | undefined): ProviderError {
  const name = type.charAt(0).toUpperCase() + type.slice(1);
  const body = { message: message || `the provider sent ${name} in its stream` };
  const { status: _none, ...error } = classifyBedrockError({ status: STREAM_EXCEPTION_STATUS[name] ?? 500, headers: { 'x-amzn-errortype': name }, body });
  return error;
}

const header = (headers: Record<string, { type: string; value: unknown }>, name: string) => {
  const value = headers[name]?.value;
  return typeof value === 'string' ? value : undefined;
};

/**
 * Turns ConverseStream messages into OpenAI chunks: the role first, text blocks as content, each
 * toolUse block as one tool call (its id and name at its start, its input in fragments), the
 * stop reason in a chunk of its own and the usage last. Reasoning deltas (the model's working)
 * and citations are left out, as translating a Converse answer leaves them out.
 */
export function converseStreamDecoder(): StreamDecoder {
  const framer = new Framer();
  let done = false;
  let failed = false;
  let opened = false;
  /** OpenAI tool-call index of each toolUse content block, and whether any input came for it. */
  const tools = new Map<number, { index: number; input: boolean }>();

  const choice = (delta: Obj, finish: string | null = null): ChatChunk => ({ choices: [{ index: 0, delta, finish_reason: finish }] });
  const open = (chunks: ChatChunk[]) => {
    if (opened) return;
    opened = true;
    chunks.push(choice({ role: 'assistant' }));
  };
  const tool = (block: number) => {
    let t = tools.get(block);
    if (!t) tools.set(block, (t = { index: tools.size, input: false }));
    return t;
  };

  const onEvent = (type: string | undefined, payload: Obj, chunks: ChatChunk[]): void => {
    const block = typeof payload.contentBlockIndex === 'number' ? payload.contentBlockIndex : 0;
    switch (type) {
      case 'messageStart':
        open(chunks);
        return;
      case 'contentBlockStart': {
        const start = isObj(payload.start) && isObj(payload.start.toolUse) ? payload.start.toolUse : null;
        if (!start) return;
        open(chunks);
        const { index } = tool(block);
        chunks.push(choice({ tool_calls: [{ index, id: String(start.toolUseId ?? ''), type: 'function', function: { name: String(start.name ?? ''), arguments: '' } }] }));
        return;
      }
      case 'contentBlockDelta': {
        const delta = isObj(payload.delta) ? payload.delta : {};
        if (typeof delta.text === 'string' && delta.text !== '') {
          open(chunks);
          chunks.push(choice({ content: delta.text }));
        } else if (isObj(delta.toolUse) && typeof delta.toolUse.input === 'string' && delta.toolUse.input !== '') {
          open(chunks);
          const t = tool(block);
          t.input = true;
          chunks.push(choice({ tool_calls: [{ index: t.index, function: { arguments: delta.toolUse.input } }] }));
        }
        return;
      }
      case 'contentBlockStop': {
        // A tool called without input still has arguments, as the Converse answer's `{}` does.
        const t = tools.get(block);
        if (t && !t.input) {
          t.input = true;
          chunks.push(choice({ tool_calls: [{ index: t.index, function: { arguments: '{}' } }] }));
        }
        return;
      }
      case 'messageStop':
        open(chunks);
        chunks.push(choice({}, finishReason(payload.stopReason)));
        return;
      case 'metadata': {
        const usage = usageOf(payload.usage);
        if (usage) chunks.push({ choices: [], usage });
        done = true;
        return;
      }
      // Event types AWS adds later are skipped, as its SDKs skip them.
      default:
    }
  };

  const onMessage = (bytes: Uint8Array, chunks: ChatChunk[]): ProviderError | undefined => {
    let message;
    try {
      message = codec.decode(bytes);
    } catch (err) {
      return badResponse(`the provider sent a malformed event-stream message: ${(err as Error).message}`);
    }
    let payload: unknown;
    try {
      payload = message.body.byteLength > 0 ? JSON.parse(utf8.decode(message.body)) : {};
    } catch {
      return badResponse('the provider sent a stream event that is not JSON');
    }
    const body = isObj(payload) ? payload : {};
    const kind = header(message.headers, ':message-type');
    if (kind === 'event') {
      onEvent(header(message.headers, ':event-type'), body, chunks);
      return undefined;
    }
    if (kind === 'exception') return streamException(header(message.headers, ':exception-type') ?? 'unknownException', typeof body.message === 'string' ? body.message : undefined);
    // The encoding's own error message: its code and text travel in headers, not the payload.
    if (kind === 'error') return streamException(header(message.headers, ':error-code') ?? 'unknownError', header(message.headers, ':error-message'));
    return badResponse(`the provider sent an event-stream message of type ${kind ?? '(none)'}`);
  };

  return {
    push(bytes) {
      const step: StreamStep = { chunks: [] };
      if (done || failed) return step;
      const { messages, broken } = framer.push(bytes);
      for (const message of messages) {
        const error = onMessage(message, step.chunks);
        if (error) {
          failed = true;
          return { ...step, error };
        }
        if (done) return step;
      }
      if (broken) {
        failed = true;
        step.error = badResponse(`the provider sent a malformed event-stream message: ${broken}`);
      }
      return step;
    },
    end() {
      if (done || failed) return { chunks: [] };
      const cut = framer.holding ? ', in the middle of a message' : '';
      return { chunks: [], error: badResponse(`the stream ended before the provider finished its answer${cut}`) };
    },
  };
}
