import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix, waitFor } from './support/broker.js';

const KEY = 'sy-front-door-tenant-key-0123456789';
const LIMITED = 'sy-front-door-limited-key-0123456789';
const BROKE = 'sy-front-door-broke-key-0123456789';
const SINGLE = 'sy-front-door-single-key-0123456789';

/**
 * The OpenAI-compatible front door, driven by the official `openai` SDK with nothing changed but its
 * base URL: every call is a job (readable at /v1/jobs/<id>), errors raise the SDK's own classes, a
 * throttled provider makes calls wait rather than fail, and fallback crosses wire formats.
 */
describe('POST /v1/chat/completions', () => {
  let primary: MockServer;
  let claude: MockServer;
  let slow: MockServer;
  let broker: TestBroker;
  let client: OpenAI;

  beforeAll(async () => {
    primary = await startMock();
    claude = await startMock();
    slow = await startMock({ latencyMs: 150 });
    const config = parseConfig(
      {
        redis: { url: redisUrl(), prefix: testPrefix() },
        providers: {
          primary: { type: 'openai', base_url: primary.baseUrl, api_key: 'sk-primary-secret', max_in_flight: 20 },
          claude: { type: 'anthropic', base_url: claude.url, api_key: 'sk-ant-secret', max_in_flight: 20 },
          // Two calls at once and five a second: thirty callers must queue behind it.
          narrow: { type: 'openai', base_url: slow.baseUrl, api_key: 'sk-narrow-secret', max_in_flight: 2, rpm: 5, rate_window_ms: 1000 },
        },
        models: {
          fast: ['primary/gpt-4o-mini'],
          resilient: ['primary/gpt-4o-mini', 'claude/claude-sonnet-4-5'],
          throttled: ['narrow/small-model'],
        },
        tasks: { default: 'fast', summarize: 'resilient' },
        auth: {
          api_keys: [
            { name: 'team', key: KEY },
            { name: 'limited', key: LIMITED, limits: { rpm: 2 } },
            { name: 'broke', key: BROKE, limits: { monthly_budget_usd: 0.000001 } },
            { name: 'single', key: SINGLE, limits: { max_queued: 1 } },
          ],
        },
        breaker: { failure_threshold: 1000 },
      },
      {},
      'test',
    );
    broker = await startBroker(config);
    client = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  beforeEach(async () => {
    for (const m of [primary, claude, slow]) await fetch(`${m.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await broker?.close();
    await Promise.all([primary?.app.close(), claude?.app.close(), slow?.app.close()]);
    if (broker) await dropPrefix(broker.prefix);
  });

  const behave = (m: MockServer, b: Record<string, unknown>) => fetch(`${m.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
  const job = async (id: string) => (await broker.call('GET', `/v1/jobs/${id}`, undefined, { authorization: `Bearer ${KEY}` })).body;
  const ask = (content: string) => [{ role: 'user' as const, content }];

  it('answers with the chat.completion, names its job, and keeps it readable as a job', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'fast', messages: ask('hello from the SDK'), temperature: 0.3 }).withResponse();
    expect(data).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ message: { role: 'assistant', content: 'Mock reply from gpt-4o-mini: hello from the SDK' }, finish_reason: 'stop' }] });
    const id = response.headers.get('x-switchyard-job-id')!;
    expect(id).toMatch(/^job_/);
    const record = await job(id);
    expect(record).toMatchObject({ status: 'succeeded', model: 'fast', priority: 5, provider: 'primary', result: data, usage: { total_tokens: data.usage!.total_tokens } });
    // The request reached the provider as sent, model aside; the record never holds the key.
    expect(primary.stats.last_request).toMatchObject({ model: 'gpt-4o-mini', temperature: 0.3, messages: ask('hello from the SDK') });
    expect(JSON.stringify(record)).not.toContain('sk-primary-secret');
  });

  it('routes model as an alias, provider/model or task:<name>, and takes priority, task and deadline from headers', async () => {
    const direct = await client.chat.completions.create({ model: 'primary/gpt-4.1', messages: ask('direct') }).withResponse();
    expect(direct.data.model).toBe('gpt-4.1');
    const byTask = await client.chat.completions.create({ model: 'task:summarize', messages: ask('by task') }).withResponse();
    expect((await job(byTask.response.headers.get('x-switchyard-job-id')!)).task).toBe('summarize');
    const headed = await client.chat.completions
      .create({ model: 'gpt-4o', messages: ask('headers') }, { headers: { 'x-switchyard-task': 'summarize', 'x-switchyard-priority': '2', 'x-switchyard-deadline-s': '120' } })
      .withResponse();
    const record = await job(headed.response.headers.get('x-switchyard-job-id')!);
    expect(record).toMatchObject({ task: 'summarize', priority: 2, status: 'succeeded' });
    expect(record.expires_at - record.created_at).toBe(120);
    // Without the header, a call waits as long as the OpenAI SDK does: server.sync_deadline_s, 600 s.
    expect((await job(direct.response.headers.get('x-switchyard-job-id')!)).expires_at - (await job(direct.response.headers.get('x-switchyard-job-id')!)).created_at).toBe(600);
  });

  it('answers bad input with 400 naming the field, an unknown model with 404, in the SDK\'s exception classes', async () => {
    const noMessages = await client.chat.completions.create({ model: 'fast', messages: [] }).catch((e: unknown) => e);
    expect(noMessages).toBeInstanceOf(OpenAI.BadRequestError);
    expect((noMessages as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
    const badTemp = (await client.chat.completions.create({ model: 'fast', messages: ask('x'), temperature: 9 }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(badTemp).toBeInstanceOf(OpenAI.BadRequestError);
    expect(badTemp.param).toBe('temperature');
    const badHeader = (await client.chat.completions.create({ model: 'fast', messages: ask('x') }, { headers: { 'x-switchyard-priority': '11' } }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(badHeader).toBeInstanceOf(OpenAI.BadRequestError);
    expect(badHeader.message).toMatch(/x-switchyard-priority/);
    const unknown = (await client.chat.completions.create({ model: 'no-such-model', messages: ask('x') }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.NotFoundError>;
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown.code).toBe('model_not_found');
    expect(unknown.param).toBe('model');
  });

  it('passes a provider\'s refusal on as a 400 BadRequestError, without trying another target', async () => {
    await behave(primary, { rules: [{ match: 'refuse me', status: 400, message: 'Invalid value for messages.' }] });
    const err = (await client.chat.completions.create({ model: 'resilient', messages: ask('refuse me') }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.BadRequestError>;
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.message).toMatch(/Invalid value for messages/);
    expect(err.code).toBe('invalid_request');
    const id = err.headers?.get('x-switchyard-job-id');
    expect((await job(id!)).status).toBe('failed');
    expect(claude.stats.calls).toBe(0);
  });

  it('falls back from a 503 primary to an Anthropic-format secondary and answers in OpenAI\'s shape', async () => {
    await behave(primary, { errorRate: 1, errorStatus: 503 });
    const { data, response } = await client.chat.completions.create({ model: 'resilient', messages: ask('fall over please') }).withResponse();
    expect(data).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant', content: 'Mock reply from claude-sonnet-4-5: fall over please' }, finish_reason: 'stop' }] });
    const record = await job(response.headers.get('x-switchyard-job-id')!);
    expect(record.attempts.map((a: { provider: string; outcome: string }) => [a.provider, a.outcome])).toEqual([['primary', 'fallback'], ['claude', 'succeeded']]);
    expect(claude.stats.calls).toBe(1);
  });

  it('answers a chain that ran out with 502 and tells the SDK not to retry it', async () => {
    await behave(primary, { errorRate: 1, errorStatus: 503 });
    await behave(claude, { errorRate: 1, errorStatus: 529 });
    const res = await fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'resilient', messages: ask('nobody home') }) });
    expect(res.status).toBe(502);
    expect(res.headers.get('x-should-retry')).toBe('false');
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'server_error', code: 'provider_unavailable' });
    expect(body.error.message).toMatch(/every provider for this model failed/);
    const sdk = await new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: KEY }).chat.completions.create({ model: 'resilient', messages: ask('nobody home again') }).catch((e: unknown) => e);
    expect(sdk).toBeInstanceOf(OpenAI.InternalServerError);
    // One job per call: the SDK obeyed x-should-retry and did not send it again.
    expect(primary.stats.calls).toBe(2);
  });

  it('answers a job that passed its deadline with 504', async () => {
    await behave(primary, { latencyMs: 3000 });
    const t0 = Date.now();
    const err = (await client.chat.completions.create({ model: 'fast', messages: ask('too slow') }, { headers: { 'x-switchyard-deadline-s': '1' } }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(504);
    expect(err.code).toBe('deadline_exceeded');
    expect(err.headers?.get('x-should-retry')).toBe('false');
    // At the deadline (undici's call timers are coarse), not when the slow provider would have answered.
    expect(took).toBeGreaterThanOrEqual(500);
    expect(took).toBeLessThan(2800);
  });

  it('makes thirty concurrent calls wait for a throttled provider (two at once, five a second) instead of answering 429', async () => {
    await behave(slow, { rateLimitRate: 0.2, retryAfterS: 0.3 });
    const calls = Array.from({ length: 30 }, (_, i) => client.chat.completions.create({ model: 'throttled', messages: ask(`caller ${i}`) }));
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const answers = results.map((r) => (r as PromiseFulfilledResult<OpenAI.ChatCompletion>).value.choices[0]!.message.content);
    expect(new Set(answers).size).toBe(30);
    // They did wait: never more than two at the provider, and the provider's own 429s stayed inside.
    expect(slow.stats.max_in_flight).toBeLessThanOrEqual(2);
    expect(slow.stats.by_status['200']).toBe(30);
    expect(slow.stats.by_status['429']).toBeGreaterThan(0);
  }, 60_000);

  it('applies the tenant\'s own limits: 429 with Retry-After for rpm and max_queued, 402 for a spent budget', async () => {
    const limited = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: LIMITED, maxRetries: 0 });
    const outcomes = await Promise.allSettled([1, 2, 3, 4].map((i) => limited.chat.completions.create({ model: 'fast', messages: ask(`limited ${i}`) })));
    const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason as InstanceType<typeof OpenAI.RateLimitError>);
    expect(refused.length).toBe(2);
    expect(refused.every((e) => e instanceof OpenAI.RateLimitError && Number(e.headers?.get('retry-after')) > 0)).toBe(true);
    // max_queued counts a waiting call as the unfinished job it is.
    const single = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: SINGLE, maxRetries: 0 });
    const crowd = await Promise.allSettled([1, 2, 3].map((i) => single.chat.completions.create({ model: 'throttled', messages: ask(`one at a time ${i}`) })));
    expect(crowd.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(crowd.filter((o) => o.status === 'rejected').every((o) => (o as PromiseRejectedResult).reason instanceof OpenAI.RateLimitError)).toBe(true);
    const broke = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: BROKE, maxRetries: 0 });
    await broke.chat.completions.create({ model: 'fast', messages: ask('spend it') }).catch(() => undefined);
    const err = (await broke.chat.completions.create({ model: 'fast', messages: ask('and more') }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(402);
  });

  it('replays a call made again with the same Idempotency-Key: one job, one provider call', async () => {
    const first = await client.chat.completions.create({ model: 'fast', messages: ask('once only') }, { headers: { 'idempotency-key': 'front-door-1' } }).withResponse();
    const again = await client.chat.completions.create({ model: 'fast', messages: ask('once only') }, { headers: { 'idempotency-key': 'front-door-1' } }).withResponse();
    expect(again.response.headers.get('x-switchyard-job-id')).toBe(first.response.headers.get('x-switchyard-job-id'));
    expect(again.data).toEqual(first.data);
    expect(primary.stats.calls).toBe(1);
  });

  it('cancels a call whose caller hung up before it started; one already running finishes and is kept', async () => {
    // Both of the narrow provider's slots are held by slow calls, so the next call waits in the queue.
    await behave(slow, { latencyMs: 1500 });
    const busy = [1, 2].map((i) => client.chat.completions.create({ model: 'throttled', messages: ask(`holding ${i}`) }));
    await waitFor(async () => slow.stats.in_flight === 2);
    const hangUp = new AbortController();
    const queued = fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', signal: hangUp.signal, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'throttled', messages: ask('waiting in line') }) }).catch(() => undefined);
    const waiting = await waitFor(async () => {
      const { body } = await broker.call('GET', '/v1/jobs?status=queued', undefined, { authorization: `Bearer ${KEY}` });
      return (body.data as { id: string }[]).find(() => true);
    });
    hangUp.abort();
    await queued;
    await waitFor(async () => (await job(waiting.id)).status === 'cancelled', 5000);
    expect((await job(waiting.id)).error.message).toMatch(/hung up before it started/);
    // The running ones: their callers hang up too, and they finish all the same.
    const running = await waitFor(async () => {
      const { body } = await broker.call('GET', '/v1/jobs?status=running', undefined, { authorization: `Bearer ${KEY}` });
      return (body.data as { id: string }[])[0];
    });
    await Promise.all(busy);
    expect((await job(running.id)).status).toBe('succeeded');
    expect(slow.stats.recent).not.toContain('waiting in line');
  });

  it('lists every alias, task and provider/model in OpenAI\'s shape', async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['fast', 'resilient', 'throttled', 'task:default', 'task:summarize', 'primary/gpt-4o-mini', 'claude/claude-sonnet-4-5', 'narrow/small-model']));
    const one = await client.models.retrieve('claude/claude-sonnet-4-5');
    expect(one).toMatchObject({ id: 'claude/claude-sonnet-4-5', object: 'model', owned_by: 'claude' });
    const missing = await client.models.retrieve('nope').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    const anonymous = await fetch(`${broker.url}/v1/models`);
    expect(anonymous.status).toBe(401);
  });
});
