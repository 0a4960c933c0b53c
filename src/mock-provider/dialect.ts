import type { FastifyRequest } from 'fastify';

/**
 * One provider wire format as the mock speaks it. The shared engine (server.ts) does latency,
 * fault injection and statistics; a dialect only reads a request and writes answers and errors
 * the way that provider does, so adapters are tested against their real wire shapes.
 */
export interface MockDialect {
  name: string;
  /** Fastify route pattern, e.g. `/v1/messages` or `/v1beta/models/:modelAction`. */
  path: string;
  /** A route of its own for streams, where the provider has one (Bedrock's `converse-stream`). */
  streamPath?: string;
  /** True when the request carries the expected credential, in this provider's header or scheme. */
  authorized(req: FastifyRequest, apiKey: string): boolean;
  /** The call in neutral form, or a message for a 400. */
  parse(req: FastifyRequest): MockCall | { invalid: string };
  render(call: MockCall, answer: MockAnswer, id: string): unknown;
  /** An error in this provider's shape; `kind` says why, for providers that name error types. */
  error(status: number, message: string, kind: MockErrorKind): { body: unknown; headers?: Record<string, string> };
  /** Whether the call asks for a stream: a flag in its body, or the provider's streaming path. */
  streams(req: FastifyRequest): boolean;
  /** The answer as this provider streams it. */
  renderStream(call: MockCall, answer: MockAnswer, id: string, req: FastifyRequest): MockStream;
  /** An error sent inside a stream that has begun, in this provider's streaming shape. */
  streamError(message: string): string | Uint8Array;
}

/** A streamed answer: its content type and its frames, each written on its own so faults and pacing fall between them. */
export interface MockStream {
  contentType: string;
  frames: (string | Uint8Array)[];
}

/** A text in the pieces a model streams it in: a couple of words each, so every stream has several deltas. */
export function textPieces(text: string): string[] {
  const words = text.match(/\S+\s*/g) ?? [];
  const pieces: string[] = [];
  for (let i = 0; i < words.length; i += 2) pieces.push(words.slice(i, i + 2).join(''));
  const lead = text.match(/^\s+/)?.[0];
  if (lead && pieces.length > 0) pieces[0] = lead + pieces[0];
  return pieces.length > 0 ? pieces : text ? [text] : [];
}

/** A tool call's arguments split as providers stream them: a JSON text in a few fragments. */
export function jsonPieces(json: string): string[] {
  const size = Math.max(1, Math.ceil(json.length / 3));
  const pieces: string[] = [];
  for (let i = 0; i < json.length; i += size) pieces.push(json.slice(i, i + size));
  return pieces;
}

/** One Server-Sent Event frame, with an event name for the formats that use them. */
export const sse = (data: unknown, event?: string) => `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

export type MockErrorKind = 'auth' | 'rate_limit' | 'invalid' | 'injected';

export interface MockTool {
  name: string;
}

export interface MockCall {
  model: string;
  /** The last user message's text. */
  userText: string;
  /** Set when the conversation ends with a tool result: its content. */
  toolResult: string | null;
  promptTokens: number;
  maxTokens: number | null;
  tools: MockTool[];
  /** The caller forbade tools (tool_choice none and the like). */
  toolsDisabled: boolean;
  wantsJson: boolean;
}

export interface MockAnswer {
  text: string;
  finish: 'stop' | 'length' | 'tool_calls';
  toolCall: { id: string; name: string; arguments: Record<string, unknown> } | null;
  promptTokens: number;
  completionTokens: number;
}

/** Rough token count (four characters a token), so usage looks like a real provider's. */
export const countTokens = (text: string) => Math.max(1, Math.ceil(text.length / 4));

/**
 * What the fake model says: a tool call when tools are offered and no tool result came back yet,
 * else a short text echoing the user (JSON when asked for JSON), cut at max tokens.
 */
export function answer(call: MockCall, seq: number): MockAnswer {
  if (call.tools.length > 0 && !call.toolsDisabled && call.toolResult === null) {
    const tool = call.tools[0]!;
    const args = { query: call.userText.slice(0, 100) };
    return {
      text: '',
      finish: 'tool_calls',
      toolCall: { id: `call_mock_${seq}`, name: tool.name, arguments: args },
      promptTokens: call.promptTokens,
      completionTokens: countTokens(JSON.stringify(args)) + 5,
    };
  }
  const said = call.toolResult !== null ? `Tool said: ${call.toolResult.slice(0, 200)}` : `Mock reply from ${call.model}: ${call.userText.slice(0, 200)}`;
  let text = call.wantsJson ? JSON.stringify({ reply: said }) : said;
  let finish: MockAnswer['finish'] = 'stop';
  if (call.maxTokens !== null && countTokens(text) > call.maxTokens) {
    text = text.slice(0, Math.max(0, call.maxTokens * 4));
    finish = 'length';
  }
  return { text, finish, toolCall: null, promptTokens: call.promptTokens, completionTokens: countTokens(text) };
}
