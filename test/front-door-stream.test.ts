import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix, waitFor, withRedis } from './support/broker.js';

const KEY = 'sy-stream-tenant-key-0123456789';
const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };

interface SseEvent {
  id?: string;
  data: string;
}

/** Reads an SSE body as events, as they arrive; `stopAfter` data events, it hangs up (a dropped connection). */
async function readSse(res: Response, opts: { stopAfter?: number; abort?: AbortController } = {}): Promise<{ events: SseEvent[]; raw: string }> {
  const events: SseEvent[] = [];
  let raw = '';
  let buffer = '';
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
    if (done) break;
    const text = decoder.decode(value, { stream: true });
    raw += text;
    buffer += text;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: SseEvent = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) event.id = line.slice(4);
        if (line.startsWith('data: ')) event.data = line.slice(6);
      }
      events.push(event);
      if (opts.stopAfter !== undefined && events.length >= opts.stopAfter) {
        opts.abort?.abort();
        return { events, raw };
      }
    }
  }
  return { events, raw };
}

const contentOf = (events: SseEvent[]) =>
  events
    .filter((e) => e.data !== '[DONE]')
    .map((e) => (JSON.parse(e.data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '')
    .join('');

/**
 * `stream: true` through the front door: chunks travel from the worker through a Redis Stream to the
 * API process holding the caller, as OpenAI sends them; fallback only before the first chunk; a
 * dropped stream resumes from GET /v1/jobs/<id>/stream.
 */
describe('streaming through the front door', () => {
  let primary: MockServer;
  let claude: MockServer;
  let broker: TestBroker;
  let client: OpenAI;

  beforeAll(async () => {
    primary = await startMock();
    claude = await startMock();
    const config = parseConfig(
      {
        redis: { url: redisUrl(), prefix: testPrefix() },
        providers: {
          primary: { type: 'openai', base_url: primary.baseUrl, api_key: 'sk-primary-secret' },
          claude: { type: 'anthropic', base_url: claude.url, api_key: 'sk-ant-secret' },
        },
        models: { fast: ['primary/gpt-4o-mini'], resilient: ['primary/gpt-4o-mini', 'claude/claude-sonnet-4-5'] },
        tasks: { default: 'fast' },
        auth: { api_keys: [{ name: 'team', key: KEY }] },
        breaker: { failure_threshold: 1000 },
      },
      {},
      'test',
    );
    broker = await startBroker(config);
    client = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  beforeEach(async () => {
    for (const m of [primary, claude]) await fetch(`${m.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await broker?.close();
    await Promise.all([primary?.app.close(), claude?.app.close()]);
    if (broker) await dropPrefix(broker.prefix);
  });

  const behave = (m: MockServer, b: Record<string, unknown>) => fetch(`${m.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
  const job = async (id: string) => (await broker.call('GET', `/v1/jobs/${id}`, undefined, { authorization: `Bearer ${KEY}` })).body;
  const post = (body: Record<string, unknown>, signal?: AbortSignal) => fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify(body), ...(signal && { signal }) });
  const ask = (content: string) => [{ role: 'user' as const, content }];

  it('streams with `for await` in the SDK: a role delta, content deltas, the finish, and the job keeps the assembled completion', async () => {
    const { data: stream, response } = await client.chat.completions.create({ model: 'fast', messages: ask('tell me a streamed story'), stream: true }).withResponse();
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('Mock reply from gpt-4o-mini: tell me a streamed story');
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(2);
    expect(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop')).toHaveLength(1);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    // No usage asked for: none sent, not even `usage: null`.
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    const record = await job(response.headers.get('x-switchyard-job-id')!);
    expect(record.status).toBe('succeeded');
    expect(record.result).toMatchObject({ id: chunks[0]!.id, object: 'chat.completion', choices: [{ message: { role: 'assistant', content: text }, finish_reason: 'stop' }] });
    expect(record.usage.total_tokens).toBeGreaterThan(0);
    expect(record.attempts[0].stream).toEqual({ chunks: expect.any(Number), first_chunk_ms: expect.any(Number) });
  });

  it("writes OpenAI's bytes: chunk objects in OpenAI's key order, the usage chunk with include_usage, then data: [DONE]", async () => {
    const res = await post({ model: 'fast', messages: ask('bytes please'), stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('x-switchyard-job-id')).toMatch(/^job_/);
    const { events, raw } = await readSse(res);
    expect(raw.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(raw).not.toMatch(/^id:/m);
    const chunks = events.slice(0, -1);
    for (const e of chunks) expect(e.data).toMatch(/^\{"id":"chatcmpl-[^"]+","object":"chat\.completion\.chunk","created":\d+,"model":"gpt-4o-mini","system_fingerprint":"fp_mock","choices":\[/);
    const parsed = chunks.map((e) => JSON.parse(e.data) as { choices: unknown[]; usage: unknown });
    expect(parsed.slice(0, -1).every((c) => c.usage === null && c.choices.length === 1)).toBe(true);
    expect(parsed.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number), total_tokens: expect.any(Number) } });
  });

  it('streams a tool call that the SDK assembles into the same call the job keeps', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }];
    const runner = client.chat.completions.stream({ model: 'fast', messages: ask('find the weather'), tools });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function).toEqual({ name: 'lookup', arguments: JSON.stringify({ query: 'find the weather' }) });
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    const record = await job(`job_${final.id.slice('chatcmpl-'.length)}`);
    expect(record.result.choices[0].message.tool_calls[0]).toMatchObject({ id: call.id, function: call.function });
  });

  it('answers a refusal before the first chunk with its status, so the SDK raises at create()', async () => {
    await behave(primary, { rules: [{ match: 'not allowed', status: 400, message: 'Invalid value for max_tokens.' }] });
    const err = await client.chat.completions.create({ model: 'fast', messages: ask('not allowed'), stream: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).message).toMatch(/Invalid value for max_tokens/);
  });

  it('falls back from a 503 primary to an Anthropic-format secondary before the first chunk, streaming', async () => {
    await behave(primary, { errorRate: 1, errorStatus: 503 });
    const stream = await client.chat.completions.create({ model: 'resilient', messages: ask('stream across formats'), stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Mock reply from claude-sonnet-4-5: stream across formats');
    expect(chunks.every((c) => c.model === 'claude-sonnet-4-5')).toBe(true);
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: expect.any(Number) });
    const record = await job(`job_${chunks[0]!.id.slice('chatcmpl-'.length)}`);
    expect(record.attempts.map((a: { provider: string; outcome: string }) => [a.provider, a.outcome])).toEqual([['primary', 'fallback'], ['claude', 'succeeded']]);
  });

  it('ends a stream that breaks after its first chunks with an error event the SDK raises, with no fallback, and the job records it', async () => {
    await behave(primary, { streamFailAfter: 3, streamFault: 'error' });
    const stream = await client.chat.completions.create({ model: 'resilient', messages: ask('break midway'), stream: true });
    const got: OpenAI.ChatCompletionChunk[] = [];
    const err = await (async () => {
      for await (const chunk of stream) got.push(chunk);
    })().catch((e: unknown) => e);
    expect(got.length).toBe(3);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toMatch(/the stream broke after 3 chunks/);
    const record = await job(`job_${got[0]!.id.slice('chatcmpl-'.length)}`);
    expect(record).toMatchObject({ status: 'failed', error: { type: 'provider_unavailable' } });
    expect(record.attempts).toHaveLength(1);
    expect(claude.stats.calls).toBe(0);
  });

  it('resumes a dropped stream from GET /v1/jobs/<id>/stream with Last-Event-ID, and replays it whole from the start', async () => {
    await behave(primary, { streamChunkDelayMs: 60 });
    const drop = new AbortController();
    const res = await post({ model: 'fast', messages: ask('a long answer that I will drop halfway through'), stream: true }, drop.signal);
    const id = res.headers.get('x-switchyard-job-id')!;
    const before = await readSse(res, { stopAfter: 3, abort: drop });
    expect(before.events).toHaveLength(3);
    // The job goes on without its caller.
    const resumed = await readSse(await fetch(`${broker.url}/v1/jobs/${id}/stream`, { headers: { ...auth, 'last-event-id': '3' } }));
    expect(resumed.events.at(-1)!.data).toBe('[DONE]');
    expect(resumed.events.slice(0, -1).map((e) => e.id)).toEqual(resumed.events.slice(0, -1).map((_, i) => String(i + 4)));
    const record = await job(id);
    expect(record.status).toBe('succeeded');
    const whole = record.result.choices[0].message.content as string;
    expect(contentOf(before.events) + contentOf(resumed.events)).toBe(whole);
    // From the start: the same chunks the caller was sent, numbered.
    const replay = await readSse(await fetch(`${broker.url}/v1/jobs/${id}/stream?include_usage=false`, { headers: auth }));
    expect(replay.events.slice(0, 3).map((e) => e.data)).toEqual(before.events.map((e) => e.data));
    expect(contentOf(replay.events)).toBe(whole);
  });

  it('tells a finished job again from its completion once its chunks have expired', async () => {
    const stream = await client.chat.completions.create({ model: 'fast', messages: ask('soon forgotten'), stream: true });
    let first: OpenAI.ChatCompletionChunk | undefined;
    for await (const chunk of stream) first ??= chunk;
    const id = `job_${first!.id.slice('chatcmpl-'.length)}`;
    const ttl = await withRedis((r) => r.pttl(`${broker.prefix}:stream:${id}`));
    expect(ttl).toBeGreaterThan(3_500_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    await withRedis((r) => r.del(`${broker.prefix}:stream:${id}`));
    const replay = await readSse(await fetch(`${broker.url}/v1/jobs/${id}/stream`, { headers: auth }));
    expect(contentOf(replay.events)).toBe('Mock reply from gpt-4o-mini: soon forgotten');
    expect(replay.events.at(-1)!.data).toBe('[DONE]');
    // A resume into chunks that are gone cannot line up: it says so instead of guessing.
    const late = await readSse(await fetch(`${broker.url}/v1/jobs/${id}/stream`, { headers: { ...auth, 'last-event-id': '2' } }));
    expect(JSON.parse(late.events[0]!.data)).toMatchObject({ error: { code: 'stream_expired' } });
  });

  it("answers another tenant's stream with 404 and an unknown job with 404", async () => {
    const other = await fetch(`${broker.url}/v1/jobs/job_nope/stream`, { headers: auth });
    expect(other.status).toBe(404);
    const anonymous = await fetch(`${broker.url}/v1/jobs/job_nope/stream`);
    expect(anonymous.status).toBe(401);
  });

  it('cancels a streaming call whose caller hangs up before its job starts', async () => {
    // The only worker slot is held, so the stream's job waits in the queue.
    await behave(primary, { rules: [{ match: 'hold the slot', latencyMs: 1500 }] });
    const narrow = await startBroker(parseConfig({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: { primary: { type: 'openai', base_url: primary.baseUrl, api_key: 'k', max_in_flight: 1 } },
      models: { fast: ['primary/gpt-4o-mini'] },
      tasks: { default: 'fast' },
      auth: { api_keys: [{ name: 'team', key: KEY }] },
    }, {}, 'test'));
    try {
      const held = fetch(`${narrow.url}/v1/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'fast', messages: ask('hold the slot') }) });
      await waitFor(async () => primary.stats.in_flight === 1);
      const hangUp = new AbortController();
      const pending = fetch(`${narrow.url}/v1/chat/completions`, { method: 'POST', signal: hangUp.signal, headers: auth, body: JSON.stringify({ model: 'fast', messages: ask('never mind'), stream: true }) }).catch(() => undefined);
      const queued = await waitFor(async () => ((await narrow.call('GET', '/v1/jobs?status=queued', undefined, auth)).body.data as { id: string }[])[0]);
      hangUp.abort();
      await pending;
      await waitFor(async () => (await narrow.call('GET', `/v1/jobs/${queued.id}`, undefined, auth)).body.status === 'cancelled', 5000);
      expect((await held).status).toBe(200);
      expect(primary.stats.recent).not.toContain('never mind');
    } finally {
      await narrow.close();
      await dropPrefix(narrow.prefix);
    }
  });
});
