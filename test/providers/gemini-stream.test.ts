/**
 * Streaming in the Gemini wire format, both ends: the mock streams as Google documents
 * `models.streamGenerateContent` with `alt=sse`, and the adapter's decoder turns that stream back
 * into OpenAI chunks and the completion they add up to, with faults before and during the stream.
 *
 * Written from Google's reference: https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent
 * (also https://ai.google.dev/api/rest/v1beta/models/streamGenerateContent: the body is "a stream of
 * GenerateContentResponse instances"), the `?alt=sse` request of Google's REST streaming quickstart
 * (https://github.com/google-gemini/cookbook/blob/main/quickstarts/rest/Streaming_REST.ipynb), and
 * the error once a stream has begun as Google's @google/genai SDK reads it (a `data:` event holding
 * a google.rpc.Status under `error`). No Google SDK is installed (the official one needs Node 22),
 * so the mock's stream is checked against that documented format directly instead of by an SDK.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MockDialect } from '../../src/mock-provider/dialect.js';
import { geminiDialect } from '../../src/mock-provider/dialects/gemini.js';
import { DEFAULT_BEHAVIOUR, type MockBehaviour, startMockProvider } from '../../src/mock-provider/server.js';
import { ProviderClient, type StreamResult } from '../../src/providers/client.js';
import { geminiAdapter } from '../../src/providers/gemini/adapter.js';
import type { ChatChunk, ChatRequest, StreamDecoder, StreamStep } from '../../src/providers/types.js';

const MODEL = 'gemini-2.5-flash';
const PROMPT = 'say something long enough to stream';
const weatherTool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { query: { type: 'string' } } } } };

/** One event as Google frames it. */
const ev = (data: unknown) => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\r\n\r\n`;
const bytes = (text: string) => new TextEncoder().encode(text);
const decoder = (): StreamDecoder => geminiAdapter({ baseUrl: 'https://generativelanguage.googleapis.com/v1beta' }).stream!.decoder(MODEL);

/** Everything a decoder made of `body` given whole, then ended. */
function decodeWhole(body: string | Uint8Array): StreamStep {
  const d = decoder();
  const first = d.push(typeof body === 'string' ? bytes(body) : body);
  if (first.error) return first;
  const last = d.end();
  return { chunks: [...first.chunks, ...last.chunks], ...(last.error && { error: last.error }) };
}

describe('the mock streams as Google documents streamGenerateContent', () => {
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  beforeAll(async () => {
    mock = await startMockProvider({}, {}, [geminiDialect]);
  });
  afterAll(async () => {
    await mock.app.close();
  });
  const post = (action: string, body: unknown, query = '') =>
    fetch(`${mock.url}/v1beta/models/${MODEL}:${action}${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const ask = (text: string) => ({ contents: [{ role: 'user', parts: [{ text }] }] });

  /** The raw body split into its SSE events: each `data: <json>` and nothing else, ended by a blank CRLF line. */
  async function events(res: Response): Promise<any[]> {
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.endsWith('\r\n\r\n')).toBe(true);
    return text
      .split('\r\n\r\n')
      .filter(Boolean)
      .map((frame) => {
        expect(frame).toMatch(/^data: \{.*\}$/s);
        expect(frame).not.toContain('\n');
        return JSON.parse(frame.slice('data: '.length));
      });
  }

  it('sends text as partial GenerateContentResponses adding up to the generateContent answer', async () => {
    const stream = await events(await post('streamGenerateContent', ask('Hello there, stream me please'), '?alt=sse'));
    const whole = (await (await post('generateContent', ask('Hello there, stream me please'))).json()) as any;
    expect(stream.length).toBeGreaterThan(2);
    for (const [i, e] of stream.entries()) {
      expect(Object.keys(e).sort()).toEqual(['candidates', 'modelVersion', 'responseId', 'usageMetadata']);
      expect(e.candidates).toHaveLength(1);
      expect(e.candidates[0].content.role).toBe('model');
      expect(e.candidates[0].content.parts).toEqual([{ text: expect.any(String) }]);
      // Only the last event finishes, and the body ends right after it: Gemini has no end marker.
      expect(e.candidates[0].finishReason).toBe(i === stream.length - 1 ? 'STOP' : undefined);
      expect(e.responseId).toBe(stream[0].responseId);
      expect(e.usageMetadata.promptTokenCount).toBe(whole.usageMetadata.promptTokenCount);
    }
    expect(stream.map((e) => e.candidates[0].content.parts[0].text).join('')).toBe(whole.candidates[0].content.parts[0].text);
    expect(stream.at(-1).usageMetadata).toEqual(whole.usageMetadata);
    // Running counts: an event before the last does not already claim the total.
    expect(stream[0].usageMetadata.candidatesTokenCount).toBeLessThan(whole.usageMetadata.candidatesTokenCount);
  });

  it('sends a function call whole, with its thought signature, in one event', async () => {
    const body = { ...ask('Weather in Paris?'), tools: [{ functionDeclarations: [{ name: 'get_weather' }] }] };
    const stream = await events(await post('streamGenerateContent', body, '?alt=sse'));
    const whole = (await (await post('generateContent', body)).json()) as any;
    expect(stream).toHaveLength(1);
    expect(stream[0].candidates[0]).toMatchObject({ finishReason: 'STOP', content: { role: 'model', parts: [{ functionCall: whole.candidates[0].content.parts[0].functionCall, thoughtSignature: expect.any(String) }] } });
    expect(stream[0].usageMetadata).toEqual(whole.usageMetadata);
  });

  it('refuses streamGenerateContent without alt=sse, which would be a JSON array rather than events', async () => {
    const res = await post('streamGenerateContent', ask('hi'));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 400, status: 'INVALID_ARGUMENT', message: expect.stringContaining('alt=sse') } });
  });
});

describe('Gemini streaming over the wire', () => {
  const received: { url: string; headers: Record<string, unknown>; body: any }[] = [];
  const recording: MockDialect = {
    ...geminiDialect,
    parse: (req) => {
      received.push({ url: req.url, headers: req.headers, body: req.body });
      return geminiDialect.parse(req);
    },
  };
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  let client: ProviderClient;
  beforeAll(async () => {
    mock = await startMockProvider({}, {}, [recording]);
    client = new ProviderClient('gemini', geminiAdapter({ baseUrl: `${mock.url}/v1beta`, apiKey: 'gm-stream-key' }), { timeout_ms: 2000, max_in_flight: 4 });
  });
  beforeEach(() => {
    Object.assign(mock.behaviour, DEFAULT_BEHAVIOUR, { rules: [] });
    received.length = 0;
  });
  afterAll(async () => {
    await client.close();
    await mock.app.close();
  });
  const behave = (b: Partial<MockBehaviour>) => Object.assign(mock.behaviour, b);

  const run = async (c: ProviderClient, request: Partial<ChatRequest> = {}) => {
    const batches: ChatChunk[][] = [];
    const result: StreamResult = await c.stream({ messages: [{ role: 'user', content: PROMPT }], ...request }, MODEL, {
      completionId: 'chatcmpl-test',
      onChunks: async (chunks) => void batches.push(chunks),
    });
    return { result, chunks: batches.flat() };
  };

  it('decodes text into chunks (role, content pieces, finish, usage) that add up to the non-streaming completion', async () => {
    const { result, chunks } = await run(client, { stream: true, stream_options: { include_usage: true } });
    const streamedCall = received.at(-1)!;
    const whole = await client.complete({ messages: [{ role: 'user', content: PROMPT }] }, MODEL);

    expect(streamedCall.url).toBe(`/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`);
    expect(streamedCall.headers).toMatchObject({ accept: 'text/event-stream', 'x-goog-api-key': 'gm-stream-key' });
    expect(streamedCall.body).toEqual(received.at(-1)!.body);

    expect(chunks[0]!.choices[0]!.delta).toMatchObject({ role: 'assistant' });
    const contents = chunks.filter((c) => typeof c.choices[0]?.delta.content === 'string');
    expect(contents.length).toBeGreaterThan(2);
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finishes).toEqual([{ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }]);
    expect(chunks.at(-1)).toEqual({ choices: [], usage: expect.objectContaining({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) }) });
    expect(chunks.indexOf(finishes[0]!)).toBe(chunks.length - 2);

    expect(result.ok && whole.ok).toBe(true);
    if (!result.ok || !whole.ok) return;
    // Streaming is this endpoint and usage always comes, so neither field was "dropped".
    expect(result.dropped).toBeUndefined();
    expect(result.streamed).toBe(chunks.length);
    expect(result.completion.choices).toEqual(whole.completion.choices);
    expect((result.completion.choices[0] as any).message.content).toBe(`Mock reply from ${MODEL}: ${PROMPT}`);
    expect(result.usage).toEqual(whole.usage);
  });

  it('sends the same body to both endpoints', async () => {
    const request = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: PROMPT }], max_tokens: 50, temperature: 0.2 };
    await run(client, request);
    await client.complete(request, MODEL);
    expect(received).toHaveLength(2);
    expect(received[0]!.body).toEqual(received[1]!.body);
    expect(received[0]!.body).toMatchObject({ systemInstruction: { parts: [{ text: 'Be brief.' }] }, generationConfig: { maxOutputTokens: 50, temperature: 0.2 } });
  });

  it('says length when the answer was cut at max_tokens', async () => {
    const { result } = await run(client, { max_tokens: 2 });
    expect(result.ok && result.completion.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Mock rep' } });
  });

  it('streams a tool call as one delta with its id, name, whole arguments and thought signature', async () => {
    const { result, chunks } = await run(client, { tools: [weatherTool] });
    const calls = chunks.filter((c) => c.choices[0]?.delta.tool_calls);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.choices[0]!.delta.tool_calls).toEqual([
      {
        index: 0,
        id: expect.stringMatching(/^call_mock-\d+_0$/),
        type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ query: PROMPT }) },
        extra_content: { google: { thought_signature: expect.any(String) } },
      },
    ]);
    expect(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0]!.finish_reason)).toEqual(['tool_calls']);
    expect(result.ok && result.completion.choices[0]).toMatchObject({
      message: { role: 'assistant', content: null, tool_calls: [{ id: expect.stringMatching(/^call_mock-\d+_0$/), type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ query: PROMPT }) } }] },
      finish_reason: 'tool_calls',
    });
  });

  it('classifies a refusal before the stream like any Gemini error, with nothing streamed', async () => {
    behave({ rules: [{ match: 'long enough', status: 429, message: 'Resource has been exhausted (e.g. check quota).' }] });
    const limited = await run(client);
    expect(limited.chunks).toEqual([]);
    expect(limited.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'rate_limited', status: 429, message: 'Resource has been exhausted (e.g. check quota).' } });

    behave({ rules: [], apiKey: 'another-key' });
    const refused = await run(client);
    expect(refused.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'provider_auth', status: 401, breakerFailure: true } });
  });

  it('reports an error event mid-stream with what had been streamed, without an HTTP status', async () => {
    behave({ streamFailAfter: 2, streamFault: 'error' });
    const { result, chunks } = await run(client);
    expect(chunks).toHaveLength(2);
    expect(result).toMatchObject({ ok: false, streamed: 2, error: { type: 'provider_unavailable', message: 'Injected failure mid-stream.', retryable: true, breakerFailure: true } });
    expect(result.ok || result.error).not.toHaveProperty('status');
  });

  it('reports a reset before and during the stream', async () => {
    behave({ streamFailAfter: 2, streamFault: 'reset' });
    const during = await run(client);
    expect(during.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'bad_response' } });
    // Node sends the head with the first frame, so a reset before it is a connection failure, not a cut-off stream.
    behave({ streamFailAfter: 0 });
    const before = await run(client);
    expect(before.result).toMatchObject({ ok: false, streamed: 0, error: { type: 'connection_error', retryable: true, breakerFailure: true } });
  });

  it('times out a stream that falls silent', async () => {
    behave({ streamFailAfter: 2, streamFault: 'hang' });
    const quick = new ProviderClient('gemini', geminiAdapter({ baseUrl: `${mock.url}/v1beta` }), { timeout_ms: 300, max_in_flight: 1 });
    const t0 = Date.now();
    const silent = await run(quick);
    expect(silent.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'timeout' } });
    expect(Date.now() - t0).toBeLessThan(2000);
    await quick.close();
  });

  it('gives the same chunks when the body arrives one byte at a time', async () => {
    for (const body of [
      { contents: [{ role: 'user', parts: [{ text: 'Grüße, naïve café ☃ — 日本語 🎉 and more words' }] }] },
      { contents: [{ role: 'user', parts: [{ text: 'Wetter in Zürich?' }] }], tools: [{ functionDeclarations: [{ name: 'get_weather' }] }] },
    ]) {
      const res = await fetch(`${mock.url}/v1beta/models/${MODEL}:streamGenerateContent?alt=sse`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const raw = new Uint8Array(await res.arrayBuffer());
      const whole = decodeWhole(raw);
      expect(whole.error).toBeUndefined();
      expect(whole.chunks.length).toBeGreaterThan(2);

      const d = decoder();
      const split: ChatChunk[] = [];
      for (let i = 0; i < raw.length; i++) {
        const step = d.push(raw.subarray(i, i + 1));
        expect(step.error).toBeUndefined();
        split.push(...step.chunks);
      }
      const last = d.end();
      expect(last.error).toBeUndefined();
      expect([...split, ...last.chunks]).toEqual(whole.chunks);
    }
  });
});

describe('the Gemini stream decoder', () => {
  const text = (t: string, extra: Record<string, unknown> = {}) => ({ candidates: [{ content: { role: 'model', parts: [{ text: t }] }, index: 0, ...extra }], responseId: 'r1' });

  it('builds the streaming request from the non-streaming one', async () => {
    const adapter = geminiAdapter({ baseUrl: 'https://generativelanguage.googleapis.com/v1beta/', apiKey: 'AIza-secret' });
    const request = { messages: [{ role: 'user', content: 'hi' }], temperature: 0.5 };
    const plain = await adapter.buildRequest(request, 'models/gemini-2.5-flash');
    const streamed = await adapter.stream!.buildStreamRequest({ ...request, stream: true, stream_options: { include_usage: false } }, 'models/gemini-2.5-flash');
    expect(streamed.url).toBe('https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    expect(streamed.url).not.toContain('AIza-secret');
    expect(streamed.headers).toEqual({ ...plain.headers, accept: 'text/event-stream' });
    expect(streamed.body).toBe(plain.body);
    expect(streamed.dropped).toBeUndefined();
  });

  it('keeps the last usageMetadata, counting thoughts as OpenAI does, and leaves thought text out', () => {
    const out = decodeWhole(
      ev({ ...text('Hel'), usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 1, totalTokenCount: 6 } }) +
        ev({
          candidates: [{ content: { role: 'model', parts: [{ text: 'thinking about it', thought: true }, { text: 'lo!' }] }, finishReason: 'STOP', index: 0 }],
          usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 3, thoughtsTokenCount: 20, cachedContentTokenCount: 2, totalTokenCount: 28 },
        }),
    );
    expect(out.error).toBeUndefined();
    expect(out.chunks).toEqual([
      { choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] },
      { choices: [{ index: 0, delta: { content: 'lo!' }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
      {
        choices: [],
        usage: { prompt_tokens: 5, completion_tokens: 23, total_tokens: 28, prompt_tokens_details: { cached_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 20 } },
      },
    ]);
  });

  it('maps the finish reason as the non-streaming answer does', () => {
    for (const [reason, expected] of [['MAX_TOKENS', 'length'], ['SAFETY', 'content_filter'], ['RECITATION', 'content_filter'], ['OTHER', 'stop']] as const) {
      const out = decodeWhole(ev(text('x', { finishReason: reason })));
      expect(out.chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean)).toEqual([expected]);
    }
  });

  it('calls a stream that ends before any finishReason cut off, however it ends', () => {
    expect(decodeWhole(ev(text('partial answer'))).error).toMatchObject({ type: 'bad_response', message: expect.stringContaining('ended before') });
    // Cut inside an event: the half JSON is not taken for an answer.
    const whole = ev(text('done', { finishReason: 'STOP' }));
    expect(decodeWhole(whole.slice(0, whole.length - 12)).error).toMatchObject({ type: 'bad_response' });
    expect(decodeWhole('').error).toMatchObject({ type: 'bad_response' });
  });

  it('takes a last event that lacks its closing blank line', () => {
    const out = decodeWhole(ev(text('a ')) + `data: ${JSON.stringify(text('b', { finishReason: 'STOP' }))}`);
    expect(out.error).toBeUndefined();
    expect(out.chunks.map((c) => c.choices[0]?.delta.content ?? c.choices[0]?.finish_reason)).toEqual(['a ', 'b', 'stop']);
  });

  it('answers a blocked prompt with a refusal and content_filter, as the non-streaming call does', () => {
    const out = decodeWhole(ev({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 4, totalTokenCount: 4 } }));
    expect(out.error).toBeUndefined();
    expect(out.chunks).toEqual([
      { choices: [{ index: 0, delta: { role: 'assistant', content: null, refusal: 'Gemini blocked the prompt (SAFETY).' }, finish_reason: null }] },
      { choices: [{ index: 0, delta: {}, finish_reason: 'content_filter' }] },
      { choices: [], usage: expect.objectContaining({ prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 }) },
    ]);
  });

  it('keeps candidates apart, each opened with its role and finished on its own', () => {
    const both = (a: string, b: string, finishReason?: string) => ({
      candidates: [0, 1].map((index) => ({ index, content: { role: 'model', parts: [{ text: index === 0 ? a : b }] }, ...(finishReason && { finishReason }) })),
    });
    const out = decodeWhole(ev(both('A1 ', 'B1 ')) + ev(both('A2', 'B2', 'STOP')));
    expect(out.error).toBeUndefined();
    const of = (i: number) => out.chunks.filter((c) => c.choices[0]?.index === i).map((c) => c.choices[0]!);
    expect(of(0)).toEqual([
      { index: 0, delta: { role: 'assistant', content: 'A1 ' }, finish_reason: null },
      { index: 0, delta: { content: 'A2' }, finish_reason: null },
      { index: 0, delta: {}, finish_reason: 'stop' },
    ]);
    expect(of(1).map((c) => c.delta.content ?? c.finish_reason)).toEqual(['B1 ', 'B2', 'stop']);
    expect(of(1)[0]!.delta.role).toBe('assistant');
  });

  it('numbers several function calls and names them after the response id', () => {
    const call = (name: string) => ({ functionCall: { name, args: { q: name } } });
    const out = decodeWhole(ev({ candidates: [{ index: 0, content: { role: 'model', parts: [call('a')] } }], responseId: 'resp9' }) + ev({ candidates: [{ index: 0, content: { role: 'model', parts: [call('b')] }, finishReason: 'STOP' }] }));
    const calls = out.chunks.flatMap((c) => (c.choices[0]?.delta.tool_calls as unknown[] | undefined) ?? []);
    expect(calls).toEqual([
      { index: 0, id: 'call_resp9_0', type: 'function', function: { name: 'a', arguments: '{"q":"a"}' } },
      { index: 1, id: 'call_resp9_1', type: 'function', function: { name: 'b', arguments: '{"q":"b"}' } },
    ]);
    expect(out.chunks.at(-1)!.choices[0]!.finish_reason).toBe('tool_calls');
  });

  it.each([
    ['a 429 with RetryInfo', { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded.', details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '7s' }] }, { type: 'rate_limited', retryAfterMs: 7000, breakerFailure: false }],
    ['a 503', { code: 503, status: 'UNAVAILABLE', message: 'The model is overloaded. Please try again later.' }, { type: 'provider_unavailable', retryable: true, breakerFailure: true }],
    ['an input too long', { code: 400, status: 'INVALID_ARGUMENT', message: 'The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).' }, { type: 'context_length_exceeded', retryable: true }],
    ['a bad request', { code: 400, status: 'INVALID_ARGUMENT', message: 'Invalid value at generation_config.temperature.' }, { type: 'invalid_request', retryable: false }],
    ['no code at all', { message: 'Internal error encountered.' }, { type: 'provider_unavailable', message: 'Internal error encountered.' }],
  ])('classifies an error event carrying %s as that refusal would be', (_name, error, expected) => {
    const d = decoder();
    const step = d.push(bytes(ev(text('Hi ')) + ev({ error })));
    expect(step.chunks).toHaveLength(1);
    expect(step.error).toMatchObject(expected);
    expect(step.error).not.toHaveProperty('status');
  });

  it('calls an event that is not JSON a bad response', () => {
    expect(decodeWhole(ev(text('Hi ')) + ev('<html>502</html>')).error).toMatchObject({ type: 'bad_response', message: expect.stringContaining('not JSON') });
    expect(decodeWhole(ev('null')).error).toMatchObject({ type: 'bad_response' });
  });
});
