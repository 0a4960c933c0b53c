import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

describe('GET /v1/jobs/:id?wait=N', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let apiOnly: TestBroker;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 400 });
    broker = await startBroker(configFor({ primary: mock }));
    // A second API process on the same Redis, with no workers of its own.
    apiOnly = await startBroker(broker.config, { workers: undefined });
  });
  afterAll(async () => {
    await apiOnly.close();
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('holds the request until the job ends, woken by the terminal event', async () => {
    const { body } = await broker.call('POST', '/v1/jobs', { request: chat() });
    const t0 = Date.now();
    const done = await apiOnly.call('GET', `/v1/jobs/${body.id}?wait=30`);
    const held = Date.now() - t0;
    expect(done.body.status).toBe('succeeded');
    // Answered when the job ended, far sooner than the 30 s it was allowed to wait.
    expect(held).toBeGreaterThanOrEqual(200);
    expect(held).toBeLessThan(10_000);
    expect(apiOnly.runtime.api).toBeDefined();
  });

  it('registers one waiter per held request and none after they are answered', async () => {
    const { body } = await broker.call('POST', '/v1/jobs', { request: chat() });
    const events = (apiOnly.runtime.api as any).services.events;
    const polls = Array.from({ length: 25 }, () => apiOnly.call('GET', `/v1/jobs/${body.id}?wait=30`));
    await waitFor(async () => events.waiting === 25, 5000, 5);
    const results = await Promise.all(polls);
    expect(results.every((r) => r.body.status === 'succeeded')).toBe(true);
    expect(events.waiting).toBe(0);
  });

  it('answers held requests with the current job when the API shuts down', async () => {
    const parked = await startBroker(configFor({ primary: mock }), { workers: undefined });
    const { body } = await parked.call('POST', '/v1/jobs', { request: chat() });
    const held = parked.call('GET', `/v1/jobs/${body.id}?wait=30`);
    const events = (parked.runtime.api as any).services.events;
    await waitFor(async () => events.waiting === 1, 5000, 5);
    const t0 = Date.now();
    await parked.close();
    const res = await held;
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('queued');
    await dropPrefix(parked.prefix);
  });

  it('returns the job as it is when the wait runs out', async () => {
    // A broker on its own prefix with no workers: the job cannot start.
    const parked = await startBroker(configFor({ primary: mock }), { workers: undefined });
    try {
      const { body } = await parked.call('POST', '/v1/jobs', { request: chat() });
      const t0 = Date.now();
      const res = await parked.call('GET', `/v1/jobs/${body.id}?wait=1`);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('queued');
      const immediate = await parked.call('GET', `/v1/jobs/${body.id}?wait=0`);
      expect(immediate.body.status).toBe('queued');
    } finally {
      await parked.close();
      await dropPrefix(parked.prefix);
    }
  });

  it('drops the waiter when the client goes away', async () => {
    const { body } = await apiOnly.call('POST', '/v1/jobs', { model: 'primary/slow', request: chat() });
    const events = (apiOnly.runtime.api as any).services.events;
    const ctrl = new AbortController();
    const pending = fetch(`${apiOnly.url}/v1/jobs/${body.id}?wait=30`, { signal: ctrl.signal }).catch(() => 'aborted');
    await waitFor(async () => events.waiting === 1, 5000, 5);
    ctrl.abort();
    expect(await pending).toBe('aborted');
    await waitFor(async () => events.waiting === 0, 5000, 5);
  });
});
