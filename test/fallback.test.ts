import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../src/redis/embedded.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { hopJobId } from '../src/queues/provider-queues.js';

/** A retryable failure moves the job down its chain; a bad request fails it at once. */
describe('fallback along the chain', () => {
  let primary: MockServer;
  let secondary: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    primary = await startMock();
    secondary = await startMock();
    const deadPort = await freePort();
    const config = configFor(
      { primary, secondary, dead: { baseUrl: `http://127.0.0.1:${deadPort}/v1` } as MockServer },
      {
        models: { chain: ['primary/p-model', 'secondary/s-model'], 'dead-first': ['dead/x', 'secondary/s-model'], 'slow-first': ['primary/slow', 'secondary/s-model'] },
        tasks: { default: 'chain' },
        // These tests are about the taxonomy; the breaker has its own (it would open on them).
        breaker: { failure_threshold: 1000 },
      },
    );
    config.providers.primary = { ...config.providers.primary!, timeout_ms: 300 };
    broker = await startBroker(config);
  });
  beforeEach(async () => {
    for (const m of [primary, secondary]) await fetch(`${m.url}/_mock/reset`, { method: 'POST' });
    // A 429 in an earlier case paused the primary; let the pause run out so routing reaches it again.
    await waitFor(async () => !broker.runtime.breakers.isUnavailable('primary'), 5000);
  });
  afterAll(async () => {
    await broker.close();
    await Promise.all([primary.app.close(), secondary.app.close()]);
    await dropPrefix(broker.prefix);
  });

  const run = async (body: Record<string, unknown>) => {
    const { body: job } = await broker.call('POST', '/v1/jobs', { request: chat(), ...body });
    return (await broker.call('GET', `/v1/jobs/${job.id}?wait=30`)).body;
  };
  const behave = (m: MockServer, b: Record<string, unknown>) => fetch(`${m.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });

  const retryable: [string, Record<string, unknown>, string, number][] = [
    ['503', { errorRate: 1, errorStatus: 503 }, 'provider_unavailable', 503],
    ['500', { errorRate: 1, errorStatus: 500 }, 'provider_unavailable', 500],
    ['529 overloaded', { errorRate: 1, errorStatus: 529 }, 'provider_unavailable', 529],
    ['401', { apiKey: 'some-other-key' }, 'provider_auth', 401],
    ['429', { rateLimitRate: 1, retryAfterS: 2 }, 'rate_limited', 429],
  ];

  it.each(retryable)('%s on the first target → the job succeeds on the next, with both attempts in the ledger', async (_n, behaviour, type, status) => {
    await behave(primary, behaviour);
    const job = await run({});
    expect(job.status).toBe('succeeded');
    expect(job.provider).toBe('secondary');
    expect(job.provider_model).toBe('s-model');
    expect(job.result.model).toBe('s-model');
    expect(job.attempts).toHaveLength(2);
    expect(job.attempts[0]).toMatchObject({ hop: 0, provider: 'primary', model: 'p-model', outcome: 'fallback', error: { type, status } });
    expect(job.attempts[1]).toMatchObject({ hop: 1, provider: 'secondary', outcome: 'succeeded' });
    if (status === 429) expect(job.attempts[0].error.retry_after_ms).toBe(2000);
    // The second hop went through the secondary's own queue, under its deterministic id.
    const hop = await broker.runtime.queues.get('secondary').getJob(`${hopJobId(job.id, 1)}`);
    expect(hop?.data).toEqual({ id: job.id, hop: 1 });
    expect(hop?.opts.priority).toBe(5);
  });

  it('falls back on a connection refused and on a timeout', async () => {
    const refused = await run({ model: 'dead-first' });
    expect(refused.status).toBe('succeeded');
    expect(refused.attempts[0].error.type).toBe('connection_error');
    await behave(primary, { latencyMs: 1000 });
    const slow = await run({ model: 'slow-first' });
    expect(slow.status).toBe('succeeded');
    expect(slow.attempts[0].error.type).toBe('timeout');
    expect(slow.attempts[0].latency_ms).toBeLessThan(1000);
  });

  it('fails at once on a bad request (400), without trying the next target', async () => {
    const job = await run({ request: { messages: [{ role: 'user', content: 'x' }] }, model: 'chain', priority: 2 });
    expect(job.status).toBe('succeeded');
    await behave(primary, { errorRate: 1, errorStatus: 422 });
    const bad = await run({});
    expect(bad.status).toBe('failed');
    expect(bad.error).toMatchObject({ type: 'invalid_request', status: 422 });
    expect(bad.attempts).toHaveLength(1);
    expect(bad.attempts[0].outcome).toBe('failed');
    expect(secondary.stats.calls).toBe(0);
  });

  it('fails with every attempt visible when the whole chain fails', async () => {
    await behave(primary, { errorRate: 1, errorStatus: 503 });
    await behave(secondary, { errorRate: 1, errorStatus: 502 });
    const job = await run({});
    expect(job.status).toBe('failed');
    expect(job.attempts.map((a: any) => [a.provider, a.outcome, a.error.status])).toEqual([
      ['primary', 'fallback', 503],
      ['secondary', 'failed', 502],
    ]);
    expect(job.error.message).toMatch(/all 2 targets failed/);
    expect(job.provider).toBe('secondary');
  });
});
