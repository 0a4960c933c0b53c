import type { Usage as AnthropicUsage } from '@anthropic-ai/sdk/resources/messages';
import { classifyStatus, classifyStreamError, type ProviderError } from '../errors.js';
import { isObj, type Obj } from '../openai-request.js';
import { sseDecoder } from '../sse-decoder.js';
import type { ChatChunk, ChatRequest, HttpRequest, StreamingAdapter, StreamStep } from '../types.js';
import { anthropicErrorDetail } from './adapter.js';
import { FINISH, JSON_TOOL, toUsage } from './translate.js';

/**
 * The HTTP status each of Anthropic's error types stands for (its "Errors" reference): an `error`
 * event inside a 200 stream names only its type, and the type is as precise as a status would be.
 */
const STATUS_OF_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/** Anthropic's mid-stream `{"type":"error","error":{type, message}}`, classified as the same error answered as HTTP would be. */
export function anthropicStreamError(body: unknown): ProviderError {
  const type = isObj(body) && isObj(body.error) ? body.error.type : undefined;
  const detail = anthropicErrorDetail(body);
  const status = typeof type === 'string' ? STATUS_OF_TYPE[type] : undefined;
  if (status === undefined) return classifyStreamError(detail);
  // The stream itself was a 200: the error carries no status of its own, as classifyStreamError's do not.
  const { status: _none, ...error } = classifyStatus(status, { ...detail, message: detail.message || 'the provider sent an error in its stream' });
  return error;
}

/** How one content block of the message is passed on. */
type Block =
  | { kind: 'text' }
  | { kind: 'tool'; call: number; sent: boolean }
  // The forced tool a JSON response_format is asked through: its input is the answer's content.
  | { kind: 'json'; sent: boolean }
  // Thinking and server-tool blocks: the model's working, left out as the non-streaming answer leaves them out.
  | { kind: 'skipped' };

const piece = (delta: Obj, finish: string | null = null): ChatChunk => ({ choices: [{ index: 0, delta, finish_reason: finish }] });

/**
 * One Messages stream's state: which content block is what, the tool calls numbered so far, the
 * usage as it grows (input in `message_start`, cumulative counts in each `message_delta`), and
 * whether the finish reason went out.
 */
function messageStream() {
  const blocks = new Map<number, Block>();
  let calls = 0;
  let usage: Partial<AnthropicUsage> | undefined;
  let json = false;
  let finished = false;

  const finish = (stopReason: string | null | undefined): ChatChunk => {
    finished = true;
    const reason = stopReason ?? 'end_turn';
    // As toChatCompletion says: the forced JSON tool is how the answer was asked for, not a call to make.
    return piece({}, json && reason === 'tool_use' ? 'stop' : (FINISH[reason as keyof typeof FINISH] ?? 'stop'));
  };

  const startBlock = (index: number, block: Obj): ChatChunk[] => {
    if (block.type === 'text') {
      blocks.set(index, { kind: 'text' });
      return typeof block.text === 'string' && block.text ? [piece({ content: block.text })] : [];
    }
    if (block.type !== 'tool_use') {
      blocks.set(index, { kind: 'skipped' });
      return [];
    }
    // Anthropic opens a tool_use block with `input: {}` and streams the input; one that came whole is sent whole.
    const whole = isObj(block.input) && Object.keys(block.input).length > 0 ? JSON.stringify(block.input) : '';
    if (block.name === JSON_TOOL) {
      json = true;
      blocks.set(index, { kind: 'json', sent: whole !== '' });
      return whole ? [piece({ content: whole })] : [];
    }
    const call = calls++;
    blocks.set(index, { kind: 'tool', call, sent: whole !== '' });
    const head = piece({ tool_calls: [{ index: call, id: String(block.id ?? ''), type: 'function', function: { name: String(block.name ?? ''), arguments: '' } }] });
    return whole ? [head, piece({ tool_calls: [{ index: call, function: { arguments: whole } }] })] : [head];
  };

  const blockDelta = (block: Block | undefined, delta: Obj): ChatChunk[] => {
    if (delta.type === 'text_delta' && block?.kind === 'text' && typeof delta.text === 'string' && delta.text) return [piece({ content: delta.text })];
    if (delta.type !== 'input_json_delta' || typeof delta.partial_json !== 'string' || !delta.partial_json) return [];
    if (block?.kind === 'json') {
      block.sent = true;
      return [piece({ content: delta.partial_json })];
    }
    if (block?.kind === 'tool') {
      block.sent = true;
      return [piece({ tool_calls: [{ index: block.call, function: { arguments: delta.partial_json } }] })];
    }
    return [];
  };

  /** A tool with no parameters streams no input at all; the non-streaming answer has `{}` for it. */
  const stopBlock = (block: Block | undefined): ChatChunk[] => {
    if (block?.kind === 'tool' && !block.sent) return [piece({ tool_calls: [{ index: block.call, function: { arguments: '{}' } }] })];
    if (block?.kind === 'json' && !block.sent) return [piece({ content: '{}' })];
    return [];
  };

  const messageDelta = (event: Obj): ChatChunk[] => {
    // The counts in message_delta are the message's running totals: they replace, never add; a
    // count it leaves out (or sends null) keeps the value message_start gave.
    if (isObj(event.usage)) {
      const next: Obj = { ...usage };
      for (const [key, value] of Object.entries(event.usage)) if (value !== null && value !== undefined) next[key] = value;
      usage = next as Partial<AnthropicUsage>;
    }
    const delta = isObj(event.delta) ? event.delta : {};
    if (finished || typeof delta.stop_reason !== 'string') return [];
    const out: ChatChunk[] = [];
    const explanation = isObj(delta.stop_details) ? delta.stop_details.explanation : undefined;
    if (delta.stop_reason === 'refusal' && typeof explanation === 'string' && explanation) out.push(piece({ refusal: explanation }));
    out.push(finish(delta.stop_reason));
    return out;
  };

  return (type: string, event: Obj): StreamStep & { done?: boolean } => {
    switch (type) {
      case 'message_start': {
        const message = isObj(event.message) ? event.message : {};
        if (isObj(message.usage)) usage = { ...message.usage } as Partial<AnthropicUsage>;
        return { chunks: [piece({ role: 'assistant' })] };
      }
      case 'content_block_start':
        return { chunks: isObj(event.content_block) ? startBlock(Number(event.index), event.content_block) : [] };
      case 'content_block_delta':
        return { chunks: isObj(event.delta) ? blockDelta(blocks.get(Number(event.index)), event.delta) : [] };
      case 'content_block_stop':
        return { chunks: stopBlock(blocks.get(Number(event.index))) };
      case 'message_delta':
        return { chunks: messageDelta(event) };
      case 'message_stop': {
        const chunks = finished ? [] : [finish(null)];
        const total = toUsage(usage);
        if (total) chunks.push({ choices: [], usage: total });
        return { chunks, done: true };
      }
      case 'error':
        return { chunks: [], error: anthropicStreamError(event) };
      default:
        // `ping`, and the event types Anthropic's versioning policy says may be added: nothing to pass on.
        return { chunks: [] };
    }
  };
}

/**
 * The Messages API streaming (`"stream": true` on `POST /v1/messages`): named Server-Sent Events,
 * `message_start` (the message, empty, with its input usage), for each content block
 * `content_block_start`, its `content_block_delta`s (`text_delta`, `input_json_delta`) and
 * `content_block_stop`, then `message_delta` (stop reason, output usage) and `message_stop`, with
 * `ping`s anywhere and an `error` event if the answer breaks off. Usage always comes: no flag to ask.
 */
export function anthropicStream(buildRequest: (request: ChatRequest, model: string) => HttpRequest): StreamingAdapter {
  return {
    buildStreamRequest(request, model) {
      // The caller's own stream flags are this endpoint's business, not parameters the translation dropped.
      const { stream: _stream, stream_options: _options, ...rest } = request;
      const call = buildRequest(rest as ChatRequest, model);
      return { ...call, headers: { ...call.headers, accept: 'text/event-stream' }, body: JSON.stringify({ ...(JSON.parse(call.body) as Obj), stream: true }) };
    },
    decoder() {
      const onEvent = messageStream();
      return sseDecoder((event) => {
        // An event without data is not dispatched by SSE clients (Anthropic's SDK skips it too).
        if (!event.data) return { chunks: [] };
        let body: unknown;
        try {
          body = JSON.parse(event.data);
        } catch {
          return { chunks: [], error: classifyStreamError({ message: 'the provider sent a stream event that is not JSON', code: 'bad_response' }) };
        }
        if (!isObj(body)) return { chunks: [] };
        // The SSE event name is what Anthropic's SDK dispatches on; the body's `type` says the same.
        return onEvent(event.event ?? String(body.type ?? ''), body);
      });
    },
  };
}
