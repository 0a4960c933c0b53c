/**
 * Streaming in Bedrock's ConverseStream format, both ends: the mock streams as Bedrock does (the
 * event-stream reader AWS's SDKs use reads it), and the adapter's decoder turns that stream back
 * into OpenAI chunks and the completion they add up to, with faults before and during the stream
 * and bytes split anywhere.
 *
 * Format, from AWS's references: the operation,
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html (request
 * syntax, the ConverseStreamOutput union of events and exceptions with their HTTP statuses), its
 * events, https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
 * (ContentBlockStartEvent, ContentBlockDeltaEvent, MessageStopEvent, ConverseStreamMetadataEvent),
 * and the binary framing, https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html
 * (prelude, headers, payload, the two CRC32s).
 */
import { EventStreamCodec, EventStreamMarshaller, type Message } from '@smithy/core/event-streams';
import fc from 'fast-check';
import type { FastifyRequest } from 'fastify';
import { request as undiciRequest } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { answer, type MockCall } from '../../src/mock-provider/dialect.js';
import { bedrockDialect } from '../../src/mock-provider/dialects/bedrock.js';
import { DEFAULT_BEHAVIOUR, startMockProvider } from '../../src/mock-provider/server.js';
import { bedrockAdapter } from '../../src/providers/bedrock/adapter.js';
import { converseStreamDecoder } from '../../src/providers/bedrock/stream.js';
import { fromConverse } from '../../src/providers/bedrock/translate.js';
import { ProviderClient, type StreamResult } from '../../src/providers/client.js';
import type { ChatChunk, ChatRequest, StreamDecoder } from '../../src/providers/types.js';
import { Receiver } from '../support/receiver.js';
import { expectedSignature, parseAuthorization } from '../support/sigv4.js';

const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const ASK: ChatRequest = { messages: [{ role: 'user', content: 'say something long enough to stream' }] };
const TOOLS = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];

const toUtf8 = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const fromUtf8 = (text: string) => new TextEncoder().encode(text);
const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** An event-stream message built here, with AWS's own encoder, independently of the mock. */
const frame = (headers: Record<string, string>, payload: unknown) =>
  codec.encode({ headers: Object.fromEntries(Object.entries(headers).map(([k, value]) => [k, { type: 'string' as const, value }])), body: fromUtf8(JSON.stringify(payload)) });
const ev = (type: string, payload: unknown) => frame({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' }, payload);
const exception = (type: string, payload: unknown) => frame({ ':exception-type': type, ':content-type': 'application/json', ':message-type': 'exception' }, payload);

const join = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** Feeds a decoder pieces of a body and ends it, gathering what it made. */
function decode(pieces: Uint8Array[], decoder: StreamDecoder = converseStreamDecoder()) {
  const chunks: ChatChunk[] = [];
  for (const piece of pieces) {
    const step = decoder.push(piece);
    chunks.push(...step.chunks);
    if (step.error) return { chunks, error: step.error };
  }
  const last = decoder.end();
  chunks.push(...last.chunks);
  return { chunks, error: last.error };
}

/** The mock's stream for a call, as bytes, without a server. */
function mockBody(call: Partial<MockCall> = {}) {
  const full: MockCall = { model: MODEL, userText: 'say something long enough to stream', toolResult: null, promptTokens: 12, maxTokens: null, tools: [], toolsDisabled: false, wantsJson: false, ...call };
  const frames = bedrockDialect.renderStream!(full, answer(full, 7), '7', {} as FastifyRequest).frames as Uint8Array[];
  return { frames, body: join(frames) };
}

describe('ConverseStream over HTTP, against the mock', () => {
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  let client: ProviderClient;
  const clients: ProviderClient[] = [];
  const clientFor = (timeout_ms = 5000) => {
    const c = new ProviderClient('bedrock', bedrockAdapter({ region: REGION, baseUrl: mock.url, credentials: CREDENTIALS }), { timeout_ms, max_in_flight: 4 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    mock = await startMockProvider({ apiKey: CREDENTIALS.accessKeyId }, {}, [bedrockDialect]);
    client = clientFor();
  });
  afterEach(() => {
    Object.assign(mock.behaviour, DEFAULT_BEHAVIOUR, { apiKey: CREDENTIALS.accessKeyId, rules: [] });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await mock.app.close();
  });

  const run = async (request: Record<string, unknown>, c = client) => {
    const batches: ChatChunk[][] = [];
    const result: StreamResult = await c.stream({ ...ASK, ...request }, MODEL, { completionId: 'chatcmpl-test', onChunks: async (chunks) => void batches.push(chunks) });
    return { result, chunks: batches.flat() };
  };

  /** Reads the mock's stream as AWS's SDKs do: their event-stream unmarshaller, events as `{ [event-type]: payload }`, exceptions thrown. */
  const sdkRead = async (request: ChatRequest) => {
    const call = await bedrockAdapter({ region: REGION, baseUrl: mock.url, credentials: CREDENTIALS }).stream!.buildStreamRequest(request, MODEL);
    const res = await undiciRequest(call.url, { method: 'POST', headers: call.headers, body: call.body });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/vnd.amazon.eventstream');
    const marshaller = new EventStreamMarshaller({ utf8Encoder: toUtf8, utf8Decoder: fromUtf8 });
    const events: Record<string, Record<string, unknown>>[] = [];
    const stream = marshaller.deserialize(res.body, async (event: Record<string, Message>) => {
      const [type, message] = Object.entries(event)[0]!;
      const payload = JSON.parse(toUtf8(message.body)) as Record<string, unknown>;
      if (message.headers[':message-type']?.value === 'exception') return { [type]: Object.assign(new Error(String(payload.message)), { name: type, ...payload }) };
      return { [type]: payload };
    });
    try {
      for await (const e of stream) events.push(e as Record<string, Record<string, unknown>>);
    } catch (err) {
      return { events, thrown: err as Error & Record<string, unknown> };
    }
    return { events };
  };

  it("is what AWS's event-stream reader reads as a ConverseStream answer", async () => {
    const { events, thrown } = await sdkRead(ASK);
    expect(thrown).toBeUndefined();
    const types = events.map((e) => Object.keys(e)[0]);
    expect(types[0]).toBe('messageStart');
    expect(types.slice(-3)).toEqual(['contentBlockStop', 'messageStop', 'metadata']);
    expect(events[0]!.messageStart).toMatchObject({ role: 'assistant' });
    const texts = events.flatMap((e) => (e.contentBlockDelta ? [(e.contentBlockDelta.delta as { text: string }).text] : []));
    expect(texts.length).toBeGreaterThan(2);
    expect(texts.join('')).toBe(`Mock reply from ${MODEL}: say something long enough to stream`);
    expect(events.at(-2)!.messageStop).toMatchObject({ stopReason: 'end_turn' });
    expect(events.at(-1)!.metadata).toMatchObject({ usage: { inputTokens: expect.any(Number), outputTokens: expect.any(Number), totalTokens: expect.any(Number) } });
  });

  it("sends a mid-stream failure as an exception message that AWS's reader throws", async () => {
    Object.assign(mock.behaviour, { streamFailAfter: 2, streamFault: 'error' });
    const { events, thrown } = await sdkRead(ASK);
    expect(events).toHaveLength(2);
    expect(thrown).toMatchObject({ name: 'modelStreamErrorException', message: 'Injected failure mid-stream.', originalStatusCode: 500 });
  });

  it('decodes text into role, content pieces, one finish and usage last, adding up to what Converse answers', async () => {
    const { result, chunks } = await run({ stream: true, stream_options: { include_usage: true } });
    expect(result.ok).toBe(true);
    // The stream fields are the path's business: neither sent to Bedrock nor reported dropped.
    expect(result.dropped).toBeUndefined();
    expect(Object.keys(mock.stats.last_request as object)).toEqual(['messages']);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant' });
    const pieces = chunks.flatMap((c) => (typeof c.choices[0]?.delta.content === 'string' ? [c.choices[0].delta.content] : []));
    expect(pieces.length).toBeGreaterThan(2);
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finishes).toEqual([{ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }]);
    expect(chunks.at(-1)).toEqual({ choices: [], usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number), total_tokens: expect.any(Number) } });
    expect(result.streamed).toBe(chunks.length);

    const plain = await client.complete(ASK, MODEL);
    if (!result.ok || !plain.ok) throw new Error('expected completions');
    expect(result.completion).toMatchObject({ id: 'chatcmpl-test', object: 'chat.completion', model: MODEL });
    expect(result.completion.choices).toEqual(plain.completion.choices);
    expect(result.usage).toEqual(plain.usage);
  });

  it('still reports what Converse cannot do, in a stream as in a call', async () => {
    const { result } = await run({ stream: true, seed: 1 });
    expect(result).toMatchObject({ ok: true, dropped: ['seed: Converse has no sampling seed'] });
  });

  it('assembles a streamed tool call: id and name first, its input in fragments', async () => {
    const { result, chunks } = await run({ tools: TOOLS });
    const calls = chunks.flatMap((c) => (c.choices[0]?.delta.tool_calls as Record<string, unknown>[] | undefined) ?? []);
    expect(calls[0]).toEqual({ index: 0, id: expect.stringMatching(/^tooluse_mock_/), type: 'function', function: { name: 'lookup', arguments: '' } });
    expect(calls.length).toBeGreaterThan(2);
    expect(calls.slice(1).every((c) => c.index === 0 && c.id === undefined)).toBe(true);
    const plain = await client.complete({ ...ASK, tools: TOOLS }, MODEL);
    if (!result.ok || !plain.ok) throw new Error('expected completions');
    const withoutId = (choices: unknown[]) => JSON.parse(JSON.stringify(choices).replace(/tooluse_mock_\d+/g, 'ID')) as unknown;
    expect(withoutId(result.completion.choices)).toEqual(withoutId(plain.completion.choices));
    expect(result.completion.choices[0]).toMatchObject({ message: { content: null, tool_calls: [{ function: { arguments: JSON.stringify({ query: 'say something long enough to stream' }) } }] }, finish_reason: 'tool_calls' });
  });

  it('maps max_tokens to finish_reason length', async () => {
    const { result } = await run({ max_tokens: 2 });
    expect(result.ok && result.completion.choices[0]).toMatchObject({ finish_reason: 'length' });
  });

  it('classifies a refusal before the stream like any answer, with nothing streamed', async () => {
    mock.behaviour.rules = [{ match: 'long enough', status: 400, message: 'Malformed input request.' }];
    const refused = await run({});
    expect(refused.chunks).toEqual([]);
    expect(refused.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'invalid_request', status: 400, message: 'Malformed input request.', retryable: false } });
    Object.assign(mock.behaviour, { rules: [], rateLimitRate: 1, retryAfterS: 2 });
    const throttled = await run({});
    expect(throttled.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'rate_limited', status: 429, retryAfterMs: 2000 } });
  });

  it('reports an exception mid-stream with what had been streamed', async () => {
    Object.assign(mock.behaviour, { streamFailAfter: 3, streamFault: 'error' });
    const { result, chunks } = await run({});
    expect(chunks).toHaveLength(3);
    expect(result).toMatchObject({ ok: false, streamed: 3, error: { type: 'provider_unavailable', message: 'Injected failure mid-stream.', retryable: true, breakerFailure: true } });
    expect(result.ok || result.error.status).toBeUndefined();
  });

  it('reports a reset mid-stream and a stream that falls silent', async () => {
    Object.assign(mock.behaviour, { streamFailAfter: 2, streamFault: 'reset' });
    const reset = await run({});
    expect(reset.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'bad_response' } });
    Object.assign(mock.behaviour, { streamFailAfter: 2, streamFault: 'hang' });
    const t0 = Date.now();
    const silent = await run({}, clientFor(300));
    expect(silent.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'timeout' } });
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

// ---- SigV4 over the streaming request's own URL, checked against an independent computation.

describe('the streaming request on the wire', () => {
  let server: Receiver;
  let client: ProviderClient;

  beforeAll(async () => {
    server = await new Receiver().start();
    client = new ProviderClient('bedrock', bedrockAdapter({ region: REGION, baseUrl: server.origin, credentials: CREDENTIALS }), { timeout_ms: 5000, max_in_flight: 1 });
  });
  afterAll(async () => {
    await client.close();
    await server.stop();
  });

  it('goes to converse-stream, asks for the event stream, and is signed over that path, accept header and body', async () => {
    server.script.push({ status: 200, headers: { 'content-type': 'application/vnd.amazon.eventstream' }, body: mockBody().body });
    const result = await client.stream(ASK, MODEL, { completionId: 'c', onChunks: async () => {} });
    expect(result.ok).toBe(true);
    const received = server.received.at(-1);
    expect(received!.url).toBe('/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream');
    expect(received!.headers.accept).toBe('application/vnd.amazon.eventstream');
    const auth = parseAuthorization(received!.headers.authorization);
    expect(auth.signedHeaders).toEqual(expect.arrayContaining(['accept', 'host', 'x-amz-date']));
    const sign = (canonicalUri: string) =>
      expectedSignature({ canonicalUri, headers: received!.headers, signedHeaders: auth.signedHeaders, body: received!.body, secret: CREDENTIALS.secretAccessKey, region: REGION });
    expect(auth.signature).toBe(sign('/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse-stream'));
    // A signature carried over from the Converse request would match this instead.
    expect(auth.signature).not.toBe(sign('/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse'));
  });
});

// ---- The decoder on its own: framing, checksums, and events the mock does not send.

describe('the ConverseStream decoder', () => {
  it('gives the same chunks whether the body comes whole, a byte at a time, or split anywhere', () => {
    for (const call of [{}, { tools: [{ name: 'lookup' }] }]) {
      const { body, frames } = mockBody(call);
      const whole = decode([body]);
      expect(whole.error).toBeUndefined();
      expect(whole.chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 12 } });
      expect(decode([...body].map((b) => Uint8Array.of(b)))).toEqual(whole);
      expect(decode(frames)).toEqual(whole);
      fc.assert(
        fc.property(fc.uniqueArray(fc.integer({ min: 1, max: body.length - 1 }), { maxLength: 12 }), (cuts) => {
          const at = [0, ...cuts.sort((a, b) => a - b), body.length];
          expect(decode(at.slice(1).map((end, i) => body.subarray(at[i], end)))).toEqual(whole);
        }),
        { numRuns: 200 },
      );
    }
  });

  it('rejects a message whose checksum is wrong as a bad_response, keeping what came before it', () => {
    const { frames } = mockBody();
    const second = new Uint8Array(frames[1]!);
    second[second.length - 6]! ^= 0x01; // a payload byte: the message CRC no longer matches
    const out = decode([join([frames[0]!, second, ...frames.slice(2)])]);
    expect(out.chunks).toEqual([{ choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }]);
    expect(out.error).toMatchObject({ type: 'bad_response', retryable: true, message: expect.stringContaining('checksum') });
  });

  it('rejects a corrupt prelude as soon as its twelve bytes are in', () => {
    const { frames } = mockBody();
    const second = new Uint8Array(frames[1]!);
    second[2]! ^= 0x40; // the total length: the prelude CRC no longer matches
    const decoder = converseStreamDecoder();
    expect(decoder.push(frames[0]!).chunks).toHaveLength(1);
    expect(decoder.push(second.subarray(0, 11))).toEqual({ chunks: [] });
    expect(decoder.push(second.subarray(11, 12)).error).toMatchObject({ type: 'bad_response', message: expect.stringContaining('prelude checksum') });
    // In one read with the message before it, that message's chunks still come out.
    const together = decode([join([frames[0]!, second])]);
    expect(together.chunks).toEqual([{ choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }]);
    expect(together.error).toMatchObject({ type: 'bad_response', message: expect.stringContaining('prelude checksum') });
  });

  it('rejects a body that is not an event stream, and one that stops before the metadata event', () => {
    expect(decode([fromUtf8('{"output":{"message":{"role":"assistant","content":[]}}}')]).error).toMatchObject({ type: 'bad_response' });
    const { frames } = mockBody();
    const early = decode(frames.slice(0, -1));
    expect(early.chunks.at(-1)).toMatchObject({ choices: [{ finish_reason: 'stop' }] });
    expect(early.error).toMatchObject({ type: 'bad_response', message: 'the stream ended before the provider finished its answer' });
    const cut = decode([join(frames).subarray(0, join(frames).length - 5)]);
    expect(cut.error).toMatchObject({ type: 'bad_response', message: expect.stringContaining('in the middle of a message') });
  });

  it('ignores what follows the metadata event', () => {
    const { body } = mockBody();
    const out = decode([body, ev('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'late' } })]);
    expect(out.error).toBeUndefined();
    expect(out.chunks.some((c) => c.choices[0]?.delta.content === 'late')).toBe(false);
  });

  it('classifies each exception ConverseStream documents as the same exception answered before the stream', () => {
    const errorOf = (bytes: Uint8Array) => decode([ev('messageStart', { role: 'assistant' }), bytes]).error;
    expect(errorOf(exception('throttlingException', { message: 'Too many requests, please wait.' }))).toMatchObject({ type: 'rate_limited', retryable: true, breakerFailure: false });
    expect(errorOf(exception('validationException', { message: 'Input is too long for requested model.' }))).toMatchObject({ type: 'context_length_exceeded', retryable: true });
    expect(errorOf(exception('validationException', { message: 'too many input tokens' }))).toMatchObject({ type: 'context_length_exceeded' });
    expect(errorOf(exception('validationException', { message: 'The model returned the following errors: bad tool.' }))).toMatchObject({ type: 'invalid_request', retryable: false });
    expect(errorOf(exception('modelStreamErrorException', { message: 'Model failed.', originalStatusCode: 500 }))).toMatchObject({ type: 'provider_unavailable', retryable: true, breakerFailure: true, message: 'Model failed.' });
    expect(errorOf(exception('serviceUnavailableException', { message: 'Service unavailable.' }))).toMatchObject({ type: 'provider_unavailable' });
    expect(errorOf(exception('internalServerException', {}))).toMatchObject({ type: 'provider_unavailable', message: 'the provider sent InternalServerException in its stream' });
    expect(errorOf(exception('somethingNewException', { message: 'new' }))).toMatchObject({ type: 'provider_unavailable', message: 'new' });
    const unmodeled = frame({ ':message-type': 'error', ':error-code': 'InternalFailure', ':error-message': 'We encountered an internal error.' }, {});
    expect(errorOf(unmodeled)).toMatchObject({ type: 'provider_unavailable', message: 'We encountered an internal error.' });
    expect(errorOf(exception('throttlingException', { message: 'x' }))!.status).toBeUndefined();
  });

  it('numbers tool calls after text, gives a call without input `{}`, skips reasoning, and counts cached input as Converse does', () => {
    const tokens = { inputTokens: 5, outputTokens: 9, totalTokens: 34, cacheReadInputTokens: 16, cacheWriteInputTokens: 4 };
    const out = decode([
      ev('messageStart', { role: 'assistant' }),
      ev('contentBlockDelta', { contentBlockIndex: 0, delta: { reasoningContent: { text: 'thinking it over' } } }),
      ev('contentBlockStop', { contentBlockIndex: 0 }),
      ev('contentBlockDelta', { contentBlockIndex: 1, delta: { text: 'Looking both up.' } }),
      ev('contentBlockStop', { contentBlockIndex: 1 }),
      ev('contentBlockStart', { contentBlockIndex: 2, start: { toolUse: { toolUseId: 'tooluse_a', name: 'now' } } }),
      ev('contentBlockStop', { contentBlockIndex: 2 }),
      ev('contentBlockStart', { contentBlockIndex: 3, start: { toolUse: { toolUseId: 'tooluse_b', name: 'weather' } } }),
      ev('contentBlockDelta', { contentBlockIndex: 3, delta: { toolUse: { input: '{"city":' } } }),
      ev('contentBlockDelta', { contentBlockIndex: 3, delta: { toolUse: { input: '"Paris"}' } } }),
      ev('contentBlockStop', { contentBlockIndex: 3 }),
      ev('messageStop', { stopReason: 'tool_use' }),
      ev('metadata', { usage: tokens, metrics: { latencyMs: 10 } }),
    ]);
    expect(out.error).toBeUndefined();
    expect(out.chunks.slice(0, -1).map((c) => c.choices[0]!.delta)).toEqual([
      { role: 'assistant' },
      { content: 'Looking both up.' },
      { tool_calls: [{ index: 0, id: 'tooluse_a', type: 'function', function: { name: 'now', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{}' } }] },
      { tool_calls: [{ index: 1, id: 'tooluse_b', type: 'function', function: { name: 'weather', arguments: '' } }] },
      { tool_calls: [{ index: 1, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 1, function: { arguments: '"Paris"}' } }] },
      {},
    ]);
    expect(out.chunks.at(-2)!.choices[0]!.finish_reason).toBe('tool_calls');
    const converse = fromConverse({ output: { message: { role: 'assistant', content: [] } }, usage: tokens }, MODEL);
    expect('usage' in converse && converse.usage).toEqual({ prompt_tokens: 25, completion_tokens: 9, total_tokens: 34, prompt_tokens_details: { cached_tokens: 16, cache_creation_tokens: 4 } });
    expect(out.chunks.at(-1)).toEqual({ choices: [], usage: 'usage' in converse && converse.usage });
  });
});
