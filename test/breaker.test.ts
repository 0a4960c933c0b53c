import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/schema.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

const COOLDOWN = 1000;
const THRESHOLD = 3;

describe('circuit breaker shared through Redis', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(primaryBehaviour: Partial<MockServer['behaviour']>, extra: Record<string, unknown> = {}) {
    const primary = await startMock(primaryBehaviour);
    const secondary = await startMock();
    const config: Config = configFor(
      { primary, secondary },
      { models: { chain: ['primary/p', 'secondary/s'] }, tasks: { default: 'chain' }, breaker: { failure_threshold: THRESHOLD, cooldown_ms: COOLDOWN }, ...extra },
    );
    const broker = await startBroker(config);
    // A second API process on the same Redis: it must see the same breaker.
    const otherApi = await startBroker(config, { workers: undefined });
    cleanup.push(() => primary.app.close(), () => secondary.app.close(), () => dropPrefix(config.redis.prefix), () => broker.close(), () => otherApi.close());
    return { primary, secondary, broker, otherApi };
  }

  const submitAll = async (broker: TestBroker, n: number, perSecond: number) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      ids.push((await broker.call('POST', '/v1/jobs', { request: chat(`job ${i}`) })).body.id);
      await new Promise((r) => setTimeout(r, 1000 / perSecond));
    }
    return Promise.all(ids.map(async (id) => (await broker.call('GET', `/v1/jobs/${id}?wait=30`)).body));
  };

  /** Calls grouped into consecutive cooldown-long windows from the first one. */
  const perWindow = (times: number[]) => {
    const counts: number[] = [];
    const t0 = times[0] ?? 0;
    for (const t of times) {
      const w = Math.floor((t - t0) / COOLDOWN);
      counts[w] = (counts[w] ?? 0) + 1;
    }
    return counts.map((c) => c ?? 0);
  };

  it('provider down: every job succeeds on the fallback and the dead provider gets at most the threshold of calls per cooldown', async () => {
    const { primary, broker, otherApi } = await setup({ errorRate: 1, errorStatus: 503, latencyMs: 20 });
    const t0 = Date.now();
    const jobs = await submitAll(broker, 150, 50);
    expect(jobs.map((j) => j.status)).toEqual(jobs.map(() => 'succeeded'));
    expect(jobs.every((j) => j.provider === 'secondary')).toBe(true);
    const calls = primary.stats.timeline.map((c) => c.at);
    const windows = perWindow(calls);
    expect(Math.max(...windows)).toBeLessThanOrEqual(THRESHOLD);
    // The opening wave of at most THRESHOLD, then one probe per cooldown at most.
    expect(calls.length).toBeLessThanOrEqual(THRESHOLD + Math.ceil((Date.now() - t0) / COOLDOWN) + 1);
    // Every fallback from the primary in a ledger is a call the primary really received.
    const fallbacks = jobs.filter((j) => j.attempts[0]?.provider === 'primary' && j.attempts[0].outcome === 'fallback');
    expect(fallbacks.length).toBeLessThanOrEqual(calls.length);
    expect(fallbacks.length).toBeGreaterThan(0);

    // Visible to operators in every process, and logged once at the transition.
    const seen = await otherApi.call('GET', '/v1/providers');
    const p = seen.body.data.find((d: { name: string }) => d.name === 'primary');
    expect(['open', 'half_open']).toContain(p.breaker.state);
    expect(p.breaker.consecutive_failures).toBeGreaterThanOrEqual(THRESHOLD);
    expect(broker.logs.lines.some((l) => l.msg === 'circuit breaker transition' && l.breaker === 'open' && l.provider === 'primary')).toBe(true);
  });

  it('after the cooldown admits exactly one probe, and closes when it succeeds', async () => {
    const { primary, broker } = await setup({ errorRate: 1, errorStatus: 503 });
    await submitAll(broker, 10, 100);
    await waitFor(async () => broker.runtime.breakers.view('primary').state === 'open');
    // The provider recovers, slowly: the probe takes 400 ms.
    Object.assign(primary.behaviour, { errorRate: 0, latencyMs: 400 });
    const openUntil = broker.runtime.breakers.view('primary').until;
    await new Promise((r) => setTimeout(r, Math.max(0, openUntil - Date.now()) + 50));
    const before = primary.stats.calls;
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => broker.call('POST', '/v1/jobs', { request: chat(`after ${i}`) })));
    await new Promise((r) => setTimeout(r, 300));
    // While the probe is out, nothing else reaches the provider.
    expect(primary.stats.calls - before).toBe(1);
    expect(primary.stats.in_flight).toBe(1);
    const done = await Promise.all(jobs.map(async (j) => (await broker.call('GET', `/v1/jobs/${j.body.id}?wait=30`)).body));
    expect(done.every((j) => j.status === 'succeeded')).toBe(true);
    await waitFor(async () => broker.runtime.breakers.view('primary').state === 'closed');
    const later = await submitAll(broker, 5, 100);
    expect(later.every((j) => j.provider === 'primary')).toBe(true);
    expect(broker.logs.lines.some((l) => l.msg === 'circuit breaker transition' && l.breaker === 'closed' && l.provider === 'primary')).toBe(true);
  });

  it('gives back trial slots a dead worker held, once their leases run out', async () => {
    const primary = await startMock();
    const secondary = await startMock();
    const config: Config = configFor({ primary, secondary }, { models: { chain: ['primary/p', 'secondary/s'] }, tasks: { default: 'chain' }, breaker: { failure_threshold: THRESHOLD, cooldown_ms: COOLDOWN } });
    config.providers.primary = { ...config.providers.primary!, timeout_ms: 300 };
    const broker = await startBroker(config);
    cleanup.push(() => primary.app.close(), () => secondary.app.close(), () => dropPrefix(config.redis.prefix), () => broker.close());
    // A fresh provider is unproven: a worker that took every trial slot and died never gives them back.
    for (let i = 0; i < THRESHOLD; i++) expect(await broker.runtime.breakers.admit('primary')).toMatchObject({ kind: 'call', ticket: 'trial' });
    expect(await broker.runtime.breakers.admit('primary')).toEqual({ kind: 'wait' });
    await new Promise((r) => setTimeout(r, 700));
    const [job] = await submitAll(broker, 1, 100);
    expect(job.status).toBe('succeeded');
    expect(job.provider).toBe('primary');
    expect(job.attempts).toHaveLength(1);
  });

  it('a flapping provider loses no job', async () => {
    const { primary, broker } = await setup({ errorRate: 0.4, errorStatus: 502 }, { breaker: { failure_threshold: THRESHOLD, cooldown_ms: 300 } });
    const jobs = await submitAll(broker, 120, 200);
    expect(jobs.map((j) => j.status)).toEqual(jobs.map(() => 'succeeded'));
    for (const j of jobs) {
      const last = j.attempts.at(-1);
      expect(last.outcome).toBe('succeeded');
      for (const a of j.attempts.slice(0, -1)) expect(['fallback', 'skipped']).toContain(a.outcome);
    }
    expect(primary.stats.calls).toBeGreaterThan(0);
  });

  it('401 on the primary: jobs fall back, the breaker counts it, and the log says so loudly', async () => {
    const { broker } = await setup({ apiKey: 'not-the-configured-one' });
    const jobs = await submitAll(broker, 10, 100);
    expect(jobs.every((j) => j.status === 'succeeded' && j.provider === 'secondary')).toBe(true);
    expect(jobs[0].attempts[0].error).toMatchObject({ type: 'provider_auth', status: 401 });
    const loud = broker.logs.lines.filter((l) => l.level === 50 && /credentials/.test(String(l.msg)));
    expect(loud.length).toBeGreaterThan(0);
    await waitFor(async () => broker.runtime.breakers.view('primary').state !== 'closed');
  });
});
