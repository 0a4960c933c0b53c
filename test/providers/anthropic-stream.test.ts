/**
 * Streaming in the Anthropic Messages wire format, both ends: the mock streams as Anthropic does (the
 * official `@anthropic-ai/sdk` reads it and assembles the message the non-streaming call returns),
 * and the adapter's decoder turns that stream back into OpenAI chunks and the completion they add
 * up to, with faults before and during the stream.
 *
 * The event format follows Anthropic's "Streaming Messages" reference
 * (https://platform.claude.com/docs/en/build-with-claude/streaming): named events `message_start`,
 * `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop`,
 * `message_delta` (stop reason, cumulative usage), `message_stop`, `ping`s, and `error` events such
 * as `overloaded_error`; error types as in "Errors" (https://platform.claude.com/docs/en/api/errors).
 */
import Anthropic from '@anthropic-ai/sdk';
import type { Message } from '@anthropic-ai/sdk/resources/messages';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { anthropicDialect } from '../../src/mock-provider/dialects/anthropic.js';
import { startMockProvider } from '../../src/mock-provider/server.js';
import { anthropicAdapter } from '../../src/providers/anthropic/adapter.js';
import { ChunkAssembler } from '../../src/providers/chunk-assembler.js';
import { ProviderClient, type StreamResult } from '../../src/providers/client.js';
import type { ChatChunk, ChatCompletion, ProviderResult, StreamStep } from '../../src/providers/types.js';

type Mock = Awaited<ReturnType<typeof startMockProvider>>;

// Not a real model name: the SDK warns about deprecated ones.
const MODEL = 'claude-mock-1';
const QUESTION = 'say something long enough to stream';
const weatherTool = { type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { query: { type: 'string' } } } } };

/** Everything a decoder makes of a body fed `step` bytes at a time. */
function decode(body: Uint8Array, step: number): StreamStep {
  const decoder = anthropicAdapter({ baseUrl: 'http://unused' }).stream!.decoder(MODEL);
  const out: StreamStep = { chunks: [] };
  const take = (s: StreamStep) => {
    out.chunks.push(...s.chunks);
    out.error ??= s.error;
  };
  for (let i = 0; i < body.length; i += step) take(decoder.push(body.subarray(i, i + step)));
  take(decoder.end());
  return out;
}

const sseText = (events: Record<string, unknown>[]) => events.map((e) => `event: ${String(e.type)}\ndata: ${JSON.stringify(e)}\n\n`).join('');
const bytesOf = (text: string) => new TextEncoder().encode(text);

/** The completion a list of chunks adds up to, without the id and time the broker stamps. */
function assemble(chunks: ChatChunk[]) {
  const assembler = new ChunkAssembler();
  for (const c of chunks) assembler.add(c);
  const { id: _id, created: _created, ...completion } = assembler.completion('chatcmpl-x', 0, MODEL);
  return { completion, usage: assembler.usage };
}

function nonStreaming(result: ProviderResult) {
  if (!result.ok) throw new Error(`expected a completion, got ${result.error.type}: ${result.error.message}`);
  const { id: _id, created: _created, ...completion } = result.completion;
  return { completion, usage: result.usage };
}

describe('Anthropic streaming over HTTP, against the mock', () => {
  let mock: Mock;
  let client: ProviderClient;
  beforeAll(async () => {
    mock = await startMockProvider({}, {}, [anthropicDialect]);
    client = new ProviderClient('anthropic', anthropicAdapter({ baseUrl: mock.url, apiKey: 'sk-ant-stream-test' }), { timeout_ms: 2000, max_in_flight: 4 });
  });
  beforeEach(async () => {
    await fetch(`${mock.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await Promise.all([client.close(), mock.app.close()]);
  });
  const behave = (b: Record<string, unknown>) => fetch(`${mock.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
  const sdk = () => new Anthropic({ baseURL: mock.url, apiKey: 'sk-ant-stream-test', maxRetries: 0 });

  const request = (extra: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content: QUESTION }], max_tokens: 200, ...extra });
  const run = async (c: ProviderClient, extra: Record<string, unknown> = {}) => {
    const batches: ChatChunk[][] = [];
    const result: StreamResult = await c.stream(request(extra), MODEL, { completionId: 'chatcmpl-test', onChunks: async (chunks) => void batches.push(chunks) });
    return { result, chunks: batches.flat() };
  };

  it('is what the official SDK reads as an Anthropic stream: the same message the non-streaming call returns', async () => {
    const params = { model: MODEL, max_tokens: 200, messages: [{ role: 'user' as const, content: 'hello there' }] };
    const texts: string[] = [];
    const stream = sdk().messages.stream(params).on('text', (t) => void texts.push(t));
    const streamed = await stream.finalMessage();
    const whole = await sdk().messages.create(params);
    expect(texts.length).toBeGreaterThan(2);
    expect(texts.join('')).toBe(`Mock reply from ${MODEL}: hello there`);
    expect(streamed.content).toEqual([{ type: 'text', text: (whole.content[0] as { text: string }).text }]);
    expect(streamed).toMatchObject({ type: 'message', role: 'assistant', model: MODEL, stop_reason: whole.stop_reason, usage: whole.usage });
    expect(streamed.id).toMatch(/^msg_mock_/);
  });

  it('is what the official SDK reads as a streamed tool call, and its error event is an APIError of its type', async () => {
    const params = { model: MODEL, max_tokens: 200, messages: [{ role: 'user' as const, content: 'Weather in Paris?' }], tools: [{ name: 'get_weather', input_schema: { type: 'object' as const, properties: { query: { type: 'string' } } } }] };
    const fragments: string[] = [];
    const streamed = await sdk().messages.stream(params).on('inputJson', (part) => void fragments.push(part)).finalMessage();
    const whole = await sdk().messages.create(params);
    expect(fragments.length).toBeGreaterThan(1);
    expect(streamed.stop_reason).toBe('tool_use');
    expect(streamed.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_mock_/), name: 'get_weather', input: (whole.content[0] as { input: unknown }).input }]);

    await behave({ streamFailAfter: 4, streamFault: 'error' });
    const failing = sdk().messages.stream(params);
    await expect(failing.finalMessage()).rejects.toMatchObject({ type: 'overloaded_error', message: expect.stringContaining('Injected failure mid-stream.') });
    expect((await failing.finalMessage().catch((e: unknown) => e)) instanceof Anthropic.APIError).toBe(true);
  });

  it('asks the messages endpoint for a stream and decodes text: role first, several deltas, one finish, usage last, adding up to the non-streaming completion', async () => {
    // A front-door request still carries the caller's stream flags: they are the endpoint's business, not dropped parameters.
    const { result, chunks } = await run(client, { stream: true, stream_options: { include_usage: true } });
    expect(result.dropped).toBeUndefined();
    const sent = mock.stats.last_request as Record<string, unknown>;
    expect(sent).toMatchObject({ stream: true, model: MODEL, max_tokens: 200 });
    expect(sent).not.toHaveProperty('stream_options');

    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant' });
    const contents = chunks.flatMap((c) => (typeof c.choices[0]?.delta.content === 'string' ? [c.choices[0].delta.content as string] : []));
    expect(contents.length).toBeGreaterThan(2);
    expect(contents.join('')).toBe(`Mock reply from ${MODEL}: ${QUESTION}`);
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finishes).toEqual([{ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }]);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) } });
    expect(chunks.slice(0, -1).every((c) => !c.usage)).toBe(true);

    if (!result.ok) throw new Error(result.error.message);
    expect(result.streamed).toBe(chunks.length);
    expect(result.completion).toMatchObject({ id: 'chatcmpl-test', object: 'chat.completion' });
    const { id: _id, created: _created, ...streamed } = result.completion;
    expect({ completion: streamed, usage: result.usage }).toEqual(nonStreaming(await client.complete(request(), MODEL)));
  });

  it('assembles a streamed tool call: id and name first, arguments in fragments, as the non-streaming call gives it', async () => {
    const { result, chunks } = await run(client, { tools: [weatherTool] });
    const parts = chunks.flatMap((c) => (c.choices[0]?.delta.tool_calls as Record<string, unknown>[] | undefined) ?? []);
    expect(parts[0]).toEqual({ index: 0, id: expect.stringMatching(/^toolu_mock_/), type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(parts.length).toBeGreaterThan(2);
    expect(parts.slice(1).every((p) => Object.keys(p).join() === 'index,function')).toBe(true);

    if (!result.ok) throw new Error(result.error.message);
    const whole = nonStreaming(await client.complete(request({ tools: [weatherTool] }), MODEL));
    const { id: _id, created: _created, ...streamed } = result.completion;
    // Each call is its own tool_use id; everything else is the same answer.
    const sameId = (c: Record<string, unknown>) => JSON.parse(JSON.stringify(c).replace(/toolu_mock_\d+/g, 'toolu_mock_N')) as unknown;
    expect(sameId(streamed)).toEqual(sameId(whole.completion));
    expect(result.completion.choices[0]).toMatchObject({ message: { content: null, tool_calls: [{ function: { name: 'get_weather', arguments: JSON.stringify({ query: QUESTION }) } }] }, finish_reason: 'tool_calls' });
  });

  it('streams a JSON response_format as content, finishing stop, like the non-streaming answer', async () => {
    const response_format = { type: 'json_schema', json_schema: { name: 'reply', schema: { type: 'object', properties: { query: { type: 'string' } } } } };
    const { result, chunks } = await run(client, { response_format });
    expect(chunks.some((c) => c.choices[0]?.delta.tool_calls)).toBe(false);
    if (!result.ok) throw new Error(result.error.message);
    const { id: _id, created: _created, ...streamed } = result.completion;
    expect(streamed).toEqual(nonStreaming(await client.complete(request({ response_format }), MODEL)).completion);
    expect(result.completion.choices[0]).toMatchObject({ message: { content: JSON.stringify({ query: QUESTION }) }, finish_reason: 'stop' });
  });

  it('classifies an error answered before the stream like any answer, with nothing streamed', async () => {
    await behave({ rules: [{ match: 'long enough', status: 400, message: 'max_tokens: must be at most 64000' }] });
    const refused = await run(client);
    expect(refused.chunks).toEqual([]);
    expect(refused.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'invalid_request', status: 400, message: 'max_tokens: must be at most 64000', retryable: false } });

    await behave({ rules: [], rateLimitRate: 1, retryAfterS: 3 });
    const throttled = await run(client);
    expect(throttled.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'rate_limited', status: 429, retryAfterMs: 3000 } });
  });

  // Frames: 0 message_start (the role chunk), 1 content_block_start, 2 ping, 3… text deltas (a chunk each).
  it('reports an error event mid-stream with what had been streamed', async () => {
    await behave({ streamFailAfter: 5, streamFault: 'error' });
    const { result, chunks } = await run(client);
    expect(chunks).toHaveLength(3);
    expect(result).toMatchObject({ ok: false, streamed: 3, error: { type: 'provider_unavailable', message: 'Injected failure mid-stream.', retryable: true, breakerFailure: true } });
    if (!result.ok) expect(result.error).not.toHaveProperty('status');
  });

  it('reports a reset mid-stream and a stream that falls silent, with what had been streamed', async () => {
    await behave({ streamFailAfter: 4, streamFault: 'reset' });
    const reset = await run(client);
    expect(reset.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'bad_response', retryable: true } });

    await behave({ streamFailAfter: 4, streamFault: 'hang' });
    const quick = new ProviderClient('anthropic', anthropicAdapter({ baseUrl: mock.url }), { timeout_ms: 300, max_in_flight: 1 });
    const t0 = Date.now();
    const silent = await run(quick);
    expect(silent.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'timeout' } });
    expect(Date.now() - t0).toBeLessThan(2000);
    await quick.close();
  });

  it('decodes the same chunks from the body however its bytes are split (one at a time, mid-character, CRLF lines)', async () => {
    const call = await anthropicAdapter({ baseUrl: mock.url }).stream!.buildStreamRequest(request({ messages: [{ role: 'user', content: 'héllo — naïve 日本語 façade ✓ streaming' }] }), MODEL);
    const res = await fetch(call.url, { method: 'POST', headers: call.headers, body: call.body });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = new Uint8Array(await res.arrayBuffer());
    const whole = decode(body, body.length);
    expect(whole.error).toBeUndefined();
    expect(assemble(whole.chunks).completion.choices[0]).toMatchObject({ message: { content: `Mock reply from ${MODEL}: héllo — naïve 日本語 façade ✓ streaming` } });
    expect(decode(body, 1)).toEqual(whole);
    expect(decode(body, 7)).toEqual(whole);
    expect(decode(bytesOf(new TextDecoder().decode(body).replace(/\n/g, '\r\n')), 3)).toEqual(whole);
  });
});

describe('the Anthropic stream decoder, on streams as Anthropic documents them', () => {
  const adapter = anthropicAdapter({ baseUrl: 'https://api.anthropic.com', apiKey: 'sk-ant-test' });
  const start = (usage: Record<string, unknown>) => ({ type: 'message_start', message: { id: 'msg_01', type: 'message', role: 'assistant', model: MODEL, content: [], stop_reason: null, stop_sequence: null, usage } });

  it('builds the streaming request from the non-streaming one: same URL and headers, accept SSE, stream: true', async () => {
    const req = { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, temperature: 0.2, stream: true, stream_options: { include_usage: true } };
    const plain = await adapter.buildRequest({ messages: req.messages, max_tokens: 10, temperature: 0.2 }, MODEL);
    const call = await adapter.stream!.buildStreamRequest(req, MODEL);
    expect(call.url).toBe('https://api.anthropic.com/v1/messages');
    expect(call.headers).toEqual({ ...plain.headers, accept: 'text/event-stream' });
    expect(JSON.parse(call.body)).toEqual({ ...JSON.parse(plain.body), stream: true });
    expect(call.dropped).toBeUndefined();
  });

  it('adds up text, skipped thinking, two tool calls (one without input) and cache usage to what the message gives unstreamed', () => {
    const message = {
      id: 'msg_01', type: 'message', role: 'assistant', model: MODEL, stop_reason: 'tool_use', stop_sequence: null,
      content: [
        { type: 'thinking', thinking: 'Two lookups.', signature: 'sig' },
        { type: 'text', text: 'Checking both.' },
        { type: 'tool_use', id: 'toolu_a', name: 'get_weather', input: { city: 'Paris' } },
        { type: 'tool_use', id: 'toolu_b', name: 'current_time', input: {} },
      ],
      usage: { input_tokens: 12, cache_creation_input_tokens: 30, cache_read_input_tokens: 100, output_tokens: 40 },
    } as unknown as Message;
    const events = [
      start({ input_tokens: 12, cache_creation_input_tokens: 30, cache_read_input_tokens: 100, output_tokens: 1 }),
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'ping' },
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Two lookups.' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'sig' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Checking ' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'both.' } },
      { type: 'content_block_stop', index: 1 },
      { type: 'content_block_start', index: 2, content_block: { type: 'tool_use', id: 'toolu_a', name: 'get_weather', input: {} } },
      { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '' } },
      { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{"city": ' } },
      { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } },
      { type: 'content_block_stop', index: 2 },
      { type: 'content_block_start', index: 3, content_block: { type: 'tool_use', id: 'toolu_b', name: 'current_time', input: {} } },
      { type: 'content_block_stop', index: 3 },
      { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 40 } },
      { type: 'message_stop' },
    ];
    const out = decode(bytesOf(sseText(events)), 5);
    expect(out.error).toBeUndefined();
    const calls = out.chunks.flatMap((c) => (c.choices[0]?.delta.tool_calls as { index: number; id?: string }[] | undefined) ?? []);
    expect(calls.filter((c) => c.id).map((c) => [c.index, c.id])).toEqual([[0, 'toolu_a'], [1, 'toolu_b']]);
    const streamed = assemble(out.chunks);
    const whole = nonStreaming(adapter.parseSuccess({ status: 200, headers: {}, body: message }, MODEL));
    // The streamed arguments are the provider's own JSON text; the unstreamed ones are re-serialised.
    const tools = (streamed.completion.choices[0] as { message: { tool_calls: { function: { arguments: string } }[] } }).message.tool_calls;
    expect(tools.map((t) => t.function.arguments)).toEqual(['{"city": "Paris"}', '{}']);
    tools[0]!.function.arguments = JSON.stringify(JSON.parse(tools[0]!.function.arguments));
    expect(streamed).toEqual(whole);
    expect(streamed.usage).toMatchObject({ prompt_tokens: 142, completion_tokens: 40, total_tokens: 182, prompt_tokens_details: { cached_tokens: 100, cache_creation_tokens: 30 } });
  });

  it("takes message_delta's cumulative counts over message_start's where it sends them, and keeps the rest", () => {
    const events = [
      start({ input_tokens: 5, cache_creation_input_tokens: 2000, cache_read_input_tokens: 0, output_tokens: 1 }),
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi.' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'max_tokens', stop_sequence: null }, usage: { input_tokens: 6, cache_read_input_tokens: 41_203, cache_creation_input_tokens: null, output_tokens: 21 } },
      { type: 'message_stop' },
    ];
    const out = decode(bytesOf(sseText(events)), 64);
    expect(out.chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0]!.finish_reason)).toEqual(['length']);
    expect(out.chunks.at(-1)!.usage).toEqual({ prompt_tokens: 6 + 41_203 + 2000, completion_tokens: 21, total_tokens: 6 + 41_203 + 2000 + 21, prompt_tokens_details: { cached_tokens: 41_203, cache_creation_tokens: 2000 } });
  });

  it('passes a refusal on as the non-streaming answer does: its explanation as refusal, finishing content_filter', () => {
    const stop_details = { type: 'refusal', category: 'cyber', explanation: 'I cannot help with that.' };
    const message = { id: 'msg_01', type: 'message', role: 'assistant', model: MODEL, content: [{ type: 'text', text: 'Sorry.' }], stop_reason: 'refusal', stop_sequence: null, stop_details, usage: { input_tokens: 3, output_tokens: 2 } } as unknown as Message;
    const events = [
      start({ input_tokens: 3, output_tokens: 1 }),
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Sorry.' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'refusal', stop_sequence: null, stop_details }, usage: { output_tokens: 2 } },
      { type: 'message_stop' },
    ];
    const streamed = assemble(decode(bytesOf(sseText(events)), 3).chunks);
    expect(streamed).toEqual(nonStreaming(adapter.parseSuccess({ status: 200, headers: {}, body: message }, MODEL)));
    expect(streamed.completion.choices[0]).toMatchObject({ message: { content: 'Sorry.', refusal: 'I cannot help with that.' }, finish_reason: 'content_filter' });
  });

  it('classifies an error event by its Anthropic type, as the same error answered over HTTP would be', () => {
    const errorEvent = (type: string, message: string) => decode(bytesOf(`event: error\ndata: ${JSON.stringify({ type: 'error', error: { type, message } })}\n\n`), 1).error;
    expect(errorEvent('overloaded_error', 'Overloaded')).toMatchObject({ type: 'provider_unavailable', message: 'Overloaded', retryable: true, breakerFailure: true });
    expect(errorEvent('rate_limit_error', 'Slow down')).toMatchObject({ type: 'rate_limited', retryable: true, breakerFailure: false });
    // A context overflow is an invalid_request_error: another model may fit it, so it falls back.
    expect(errorEvent('invalid_request_error', 'prompt is too long: 250000 tokens > 200000 maximum')).toMatchObject({ type: 'context_length_exceeded', retryable: true, breakerFailure: false });
    expect(errorEvent('invalid_request_error', 'tools.0.name: bad')).toMatchObject({ type: 'invalid_request', retryable: false });
    expect(errorEvent('not_found_error', 'model: claude-x')).toMatchObject({ type: 'model_not_found', retryable: true });
    expect(errorEvent('something_new_error', 'Huh')).toMatchObject({ type: 'provider_unavailable', message: 'Huh' });
    expect(errorEvent('overloaded_error', 'Overloaded')).not.toHaveProperty('status');
  });

  it('is cut off when the body ends before message_stop, keeping the chunks it had; pings and unknown events change nothing', () => {
    const events = [
      start({ input_tokens: 3, output_tokens: 1 }),
      { type: 'ping' },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'some_future_event', detail: 1 },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Half' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } },
    ];
    const cut = decode(bytesOf(sseText(events)), 2);
    expect(cut.chunks.map((c) => c.choices[0]?.delta)).toEqual([{ role: 'assistant' }, { content: 'Half' }, {}]);
    expect(cut.error).toMatchObject({ type: 'bad_response', message: 'the stream ended before the provider finished its answer' });
    const finished = decode(bytesOf(sseText([...events, { type: 'message_stop' }])), 2);
    expect(finished.error).toBeUndefined();
    expect(finished.chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } });
  });
});
