import { afterEach, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function broker(mocks: Record<string, MockServer>, extra: Record<string, unknown>) {
  const b = await startBroker(configFor(mocks, extra));
  cleanup.push(...Object.values(mocks).map((m) => () => m.app.close()), () => b.close(), () => dropPrefix(b.prefix));
  return b;
}

const finish = async (b: TestBroker, ids: string[]) => Promise.all(ids.map(async (id) => (await b.call('GET', `/v1/jobs/${id}?wait=60`)).body));

describe('429 and Retry-After', () => {
  it('a 429 storm: jobs move to the fallback and the throttling provider is left alone for Retry-After', async () => {
    const primary = await startMock({ rateLimitRate: 1, retryAfterS: 1 });
    const secondary = await startMock();
    const b = await broker({ primary, secondary }, { models: { chain: ['primary/p', 'secondary/s'] }, tasks: { default: 'chain' } });
    const t0 = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 80; i++) {
      ids.push((await b.call('POST', '/v1/jobs', { request: chat(`storm ${i}`) })).body.id);
      await new Promise((r) => setTimeout(r, 25));
    }
    const jobs = await finish(b, ids);
    const seconds = (Date.now() - t0) / 1000;
    expect(jobs.every((j) => j.status === 'succeeded' && j.provider === 'secondary')).toBe(true);
    // Each 429 paused the primary for a second in every process, and after each pause one call at a
    // time tested whether the limit had lifted: about one call per Retry-After, not a stampede.
    expect(primary.stats.calls).toBeGreaterThan(0);
    expect(primary.stats.calls).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
    const rateLimited = jobs.filter((j) => j.attempts[0].provider === 'primary');
    expect(rateLimited.length).toBeGreaterThan(0);
    for (const j of rateLimited) {
      // Either it got the 429 itself, or it met the pause another job's 429 started and moved on uncalled.
      if (j.attempts[0].outcome === 'fallback') expect(j.attempts[0].error).toMatchObject({ type: 'rate_limited', status: 429, retry_after_ms: 1000 });
      else expect(j.attempts[0]).toMatchObject({ outcome: 'skipped', error: { type: 'rate_limited' } });
    }
    // 429 is not a provider failure: the breaker stays closed.
    expect(b.runtime.breakers.view('primary').state).toBe('closed');
  });

  it('rate limited on the last target, a job waits for the pause instead of failing', async () => {
    const only = await startMock({ rateLimitRate: 1, retryAfterS: 1 });
    const b = await broker({ only }, { models: { fast: ['only/m'] } });
    const ids = await Promise.all(Array.from({ length: 5 }, async (_, i) => (await b.call('POST', '/v1/jobs', { request: chat(`patient ${i}`) })).body.id as string));
    await new Promise((r) => setTimeout(r, 1500));
    expect((await b.call('GET', `/v1/jobs/${ids[0]}`)).body.status).not.toBe('failed');
    // Operators see the pause each 429 starts (between a pause ending and the next 429 there is none).
    let paused = 0;
    await waitFor(async () => (paused = (await b.call('GET', '/v1/providers')).body.data[0].queue.paused_for_ms) > 0, 3000, 50);
    expect(paused).toBeLessThanOrEqual(1000);
    only.behaviour.rateLimitRate = 0;
    const jobs = await finish(b, ids);
    expect(jobs.map((j) => j.status)).toEqual(ids.map(() => 'succeeded'));
    const waited = jobs.filter((j) => j.attempts.some((a: { outcome: string }) => a.outcome === 'rate_limited'));
    expect(waited.length).toBeGreaterThan(0);
    for (const j of waited) expect(j.attempts.at(-1).outcome).toBe('succeeded');
  });
});

describe('deadlines', () => {
  it('expires a job waiting in its queue when its deadline passes, without calling the provider', async () => {
    const slow = await startMock({ latencyMs: 2500 });
    const b = await broker({ slow }, { models: { fast: ['slow/m'] } });
    b.config.providers.slow!.max_in_flight = 1;
    const first = (await b.call('POST', '/v1/jobs', { request: chat('occupies the only slot') })).body.id;
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const late = (await b.call('POST', '/v1/jobs', { deadline_s: 1, request: chat('cannot start in time') })).body.id;
    const job = (await b.call('GET', `/v1/jobs/${late}?wait=10`)).body;
    expect(job.status).toBe('expired');
    expect(job.error.type).toBe('deadline_exceeded');
    expect(Date.now() - t0).toBeLessThan(2200);
    expect((await b.call('GET', `/v1/jobs/${first}?wait=10`)).body.status).toBe('succeeded');
    expect(slow.stats.recent).not.toContain('cannot start in time');
  });

  it('cuts a call that would finish after the deadline: the job ends expired, never late', async () => {
    const slow = await startMock({ latencyMs: 3000 });
    const b = await broker({ slow }, { models: { fast: ['slow/m'] } });
    const t0 = Date.now();
    const id = (await b.call('POST', '/v1/jobs', { deadline_s: 1, request: chat('too slow') })).body.id;
    const job = (await b.call('GET', `/v1/jobs/${id}?wait=10`)).body;
    expect(job.status).toBe('expired');
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(job.result).toBeNull();
    expect(slow.stats.recent.length + slow.stats.in_flight).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 2500));
    expect((await b.call('GET', `/v1/jobs/${id}`)).body.status).toBe('expired');
  });
});
