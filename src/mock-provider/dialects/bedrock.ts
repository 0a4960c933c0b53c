import { EventStreamCodec } from '@smithy/core/event-streams';
import type { FastifyRequest } from 'fastify';
import { countTokens, jsonPieces, type MockAnswer, type MockCall, type MockDialect, type MockErrorKind, type MockStream, textPieces } from '../dialect.js';

/**
 * Amazon Bedrock's Converse API: `POST /model/{modelId}/converse`, SigV4 auth, exception names in
 * `x-amzn-ErrorType` and `{"message"}` bodies. The mock holds no secret key, so it checks the
 * shape of the signature and that the access key id is the configured `apiKey`; the adapter's
 * tests check the signature itself.
 * Streams come from `converse-stream`, in AWS's binary event-stream encoding.
 * Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
 */

type Obj = Record<string, unknown>;
type Turn = { role?: unknown; content?: unknown };

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/[a-z0-9-]+\/bedrock\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$/;

function authorized(req: FastifyRequest, accessKeyId: string): boolean {
  const match = AUTHORIZATION.exec(String(req.headers.authorization ?? ''));
  const date = req.headers['x-amz-date'];
  if (!match || typeof date !== 'string') return false;
  const signed = match[3]!.split(';');
  return match[1] === accessKeyId && date.startsWith(match[2]!) && signed.includes('host') && signed.includes('x-amz-date');
}

/** Converse refuses unknown top-level fields, so an adapter leaking OpenAI fields fails here too. */
const REQUEST_FIELDS = new Set([
  'messages', 'system', 'inferenceConfig', 'toolConfig', 'guardrailConfig', 'additionalModelRequestFields',
  'additionalModelResponseFieldPaths', 'promptVariables', 'requestMetadata', 'performanceConfig',
]);
const IMAGE_FORMATS = new Set(['png', 'jpeg', 'gif', 'webp']);

/** The content blocks of a turn or of a toolResult. */
const contentOf = (holder: { content?: unknown } | undefined): Obj[] => (Array.isArray(holder?.content) ? (holder.content as unknown[]).filter(isObj) : []);

/** Bedrock's own wording for the mistakes an adapter is most likely to make. */
function invalidConversation(body: Obj, messages: Turn[]): string | null {
  const extra = Object.keys(body).find((k) => !REQUEST_FIELDS.has(k));
  if (extra) return `Malformed input request: extraneous key [${extra}] is not permitted, please reformat your input and try again.`;
  if (messages[0]?.role !== 'user') return 'A conversation must start with a user message. Try again with a conversation that starts with a user message.';
  for (const [i, turn] of messages.entries()) {
    if (i > 0 && turn.role === messages[i - 1]!.role) {
      return 'A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.';
    }
    const content = contentOf(turn);
    if (content.length === 0) return `The content field in the Message object at messages.${i} is empty. Add a ContentBlock object to the content field and try again.`;
    for (const [j, block] of content.entries()) {
      const problem = invalidBlock(block, messages[i - 1], !!body.toolConfig);
      if (problem) return `messages.${i}.content.${j}: ${problem}`;
    }
  }
  return null;
}

function invalidBlock(block: Obj, previous: Turn | undefined, hasToolConfig: boolean): string | null {
  if ('text' in block && (typeof block.text !== 'string' || block.text.trim() === '')) return 'the text field is blank.';
  if (isObj(block.image)) {
    const { format, source } = block.image;
    if (!IMAGE_FORMATS.has(String(format)) || !isObj(source) || typeof source.bytes !== 'string') return 'invalid image block.';
  }
  if ((block.toolUse || block.toolResult) && !hasToolConfig) return 'The toolConfig field must be defined when using toolUse and toolResult content blocks.';
  if (isObj(block.toolResult)) {
    const id = block.toolResult.toolUseId;
    const asked = contentOf(previous).some((b) => isObj(b.toolUse) && b.toolUse.toolUseId === id);
    if (!asked) return `toolResult ${String(id)} has no matching toolUse in the previous message.`;
  }
  return null;
}

const textOf = (content: Obj[]) =>
  content.map((b) => (typeof b.text === 'string' ? b.text : isObj(b.json) || Array.isArray(b.json) ? JSON.stringify(b.json) : '')).join(' ');

function parse(req: FastifyRequest): MockCall | { invalid: string } {
  // The router has already percent-decoded the path segment once: `v1%3A0` arrives as `v1:0`.
  const { modelId } = req.params as { modelId: string };
  const body = isObj(req.body) ? req.body : {};
  const messages = (Array.isArray(body.messages) ? body.messages : []) as Turn[];
  const invalid = invalidConversation(body, messages);
  if (invalid) return { invalid };
  const lastUser = [...messages].reverse().find((m) => m.role === 'user' && contentOf(m).some((b) => typeof b.text === 'string'));
  const results = contentOf(messages.at(-1)).flatMap((b) => (isObj(b.toolResult) ? [b.toolResult] : []));
  const toolConfig = isObj(body.toolConfig) ? body.toolConfig : {};
  const tools = Array.isArray(toolConfig.tools) ? (toolConfig.tools as Obj[]) : [];
  const inference = isObj(body.inferenceConfig) ? body.inferenceConfig : {};
  return {
    model: modelId,
    userText: textOf(contentOf(lastUser).filter((b) => typeof b.text === 'string')),
    toolResult: results.length > 0 ? textOf(contentOf(results.at(-1))) : null,
    promptTokens: countTokens(JSON.stringify({ system: body.system, messages })),
    maxTokens: typeof inference.maxTokens === 'number' ? inference.maxTokens : null,
    tools: tools.map((t) => ({ name: String(isObj(t.toolSpec) ? t.toolSpec.name : '') })),
    // Converse cannot forbid offered tools; an adapter honouring "none" leaves them out instead.
    toolsDisabled: false,
    wantsJson: false,
  };
}

const STOP_REASON: Record<MockAnswer['finish'], string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use' };

function render(_call: MockCall, a: MockAnswer, id: string): unknown {
  const content = a.toolCall
    ? [{ toolUse: { toolUseId: `tooluse_mock_${id}`, name: a.toolCall.name, input: a.toolCall.arguments } }]
    : [{ text: a.text }];
  return {
    output: { message: { role: 'assistant', content } },
    stopReason: STOP_REASON[a.finish],
    usage: { inputTokens: a.promptTokens, outputTokens: a.completionTokens, totalTokens: a.promptTokens + a.completionTokens },
    metrics: { latencyMs: 1 },
  };
}

const STREAM_PATH = '/model/:modelId/converse-stream';

const codec = new EventStreamCodec((bytes) => new TextDecoder().decode(bytes), (text) => new TextEncoder().encode(text));

/** Bedrock pads every payload with a `p` of filler, so a message's size does not give its text away; readers skip it. */
const FILLER = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function message(headers: Record<string, string>, payload: Obj): Uint8Array {
  const p = FILLER.slice(0, FILLER.length - (JSON.stringify(payload).length % FILLER.length));
  return codec.encode({
    headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, { type: 'string', value }])),
    body: new TextEncoder().encode(JSON.stringify({ ...payload, p })),
  });
}

const event = (type: string, payload: Obj) => message({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' }, payload);

/**
 * The answer as ConverseStream sends it, one event-stream message a frame: messageStart, the text
 * in deltas (or a toolUse block: its id and name at its start, its input JSON in fragments), the
 * block's stop, messageStop with the stop reason, and metadata with the usage, which ends it.
 */
function renderStream(_call: MockCall, a: MockAnswer, id: string): MockStream {
  const frames = [event('messageStart', { role: 'assistant' })];
  if (a.toolCall) {
    frames.push(event('contentBlockStart', { contentBlockIndex: 0, start: { toolUse: { toolUseId: `tooluse_mock_${id}`, name: a.toolCall.name } } }));
    for (const input of jsonPieces(JSON.stringify(a.toolCall.arguments))) frames.push(event('contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input } } }));
  } else {
    for (const text of textPieces(a.text)) frames.push(event('contentBlockDelta', { contentBlockIndex: 0, delta: { text } }));
  }
  frames.push(event('contentBlockStop', { contentBlockIndex: 0 }));
  frames.push(event('messageStop', { stopReason: STOP_REASON[a.finish] }));
  const usage = { inputTokens: a.promptTokens, outputTokens: a.completionTokens, totalTokens: a.promptTokens + a.completionTokens };
  frames.push(event('metadata', { usage, metrics: { latencyMs: 1 } }));
  return { contentType: 'application/vnd.amazon.eventstream', frames };
}

/** What Bedrock sends when the model fails after the stream began: an exception message inside the 200. */
const streamError = (text: string) =>
  message({ ':exception-type': 'modelStreamErrorException', ':content-type': 'application/json', ':message-type': 'exception' }, { message: text, originalStatusCode: 500, originalMessage: text });

const BY_STATUS: Record<number, string> = {
  400: 'ValidationException',
  403: 'AccessDeniedException',
  404: 'ResourceNotFoundException',
  408: 'ModelTimeoutException',
  424: 'ModelErrorException',
  429: 'ThrottlingException',
  500: 'InternalServerException',
  503: 'ServiceUnavailableException',
};

function errorType(status: number, kind: MockErrorKind): string {
  if (kind === 'auth') return 'UnrecognizedClientException';
  if (kind === 'rate_limit') return 'ThrottlingException';
  return BY_STATUS[status] ?? (status >= 500 ? 'InternalServerException' : 'ValidationException');
}

export const bedrockDialect: MockDialect = {
  name: 'bedrock',
  path: '/model/:modelId/converse',
  streamPath: STREAM_PATH,
  authorized,
  parse,
  render,
  streams: (req: FastifyRequest) => req.routeOptions.url === STREAM_PATH,
  renderStream,
  streamError,
  error(status, message, kind) {
    const type = errorType(status, kind);
    const text = kind === 'auth' ? 'The security token included in the request is invalid.' : message;
    return { body: { message: text }, headers: { 'x-amzn-ErrorType': type } };
  },
};
