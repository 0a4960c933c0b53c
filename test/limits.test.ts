import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { estimateTokens } from '../src/routing/token-estimate.js';
import { chat, configFor, dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix, waitFor } from './support/broker.js';
import { type BrokerProcess, spawnBroker, writeConfig } from './support/process.js';

const run = async (broker: TestBroker, bodies: Record<string, unknown>[]) => {
  const ids = await Promise.all(bodies.map(async (b) => (await broker.call('POST', '/v1/jobs', b)).body.id as string));
  return Promise.all(ids.map(async (id) => (await broker.call('GET', `/v1/jobs/${id}?wait=60`)).body));
};

/**
 * A hop's processedOn is its worker's clock when it asked to start, a few ms before Redis counted
 * it into the limiter's window (more under load): a window is taken to close this much early, so a
 * start that Redis placed in the next window is not counted in this one.
 */
const CLOCK_SKEW_MS = 25;

/** Consecutive fixed windows as BullMQ's limiter makes them: each opens at the first start after the last closed. */
function windows(times: number[], size: number): number[][] {
  const sorted = [...times].sort((a, b) => a - b);
  const out: number[][] = [];
  for (const t of sorted) {
    const current = out.at(-1);
    if (current && t < current[0]! + size - CLOCK_SKEW_MS) current.push(t);
    else out.push([t]);
  }
  return out;
}

describe('limits shared by three worker processes', () => {
  let limited: MockServer;
  let narrow: MockServer;
  let api: TestBroker;
  const workers: BrokerProcess[] = [];
  const prefix = testPrefix();
  const RPM = 20;
  const WINDOW = 1000;

  beforeAll(async () => {
    limited = await startMock({ latencyMs: 5 });
    narrow = await startMock({ latencyMs: 60 });
    const raw = {
      redis: { url: redisUrl(), prefix },
      providers: {
        limited: { type: 'openai', base_url: limited.baseUrl, rpm: RPM, rate_window_ms: WINDOW, max_in_flight: 10 },
        narrow: { type: 'openai', base_url: narrow.baseUrl, max_in_flight: 4 },
      },
      models: { fast: ['limited/m'] },
      tasks: { default: 'fast', narrow: ['narrow/n'] },
    };
    const file = writeConfig(raw);
    for (let i = 0; i < 3; i++) workers.push(spawnBroker('worker', { SWITCHYARD_CONFIG: file }));
    await Promise.all(workers.map((w) => w.waitForLog('provider worker pools started')));
    api = await startBroker(parseConfig(raw, {}, 'test'), { workers: undefined });
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await api.close();
    await Promise.all([limited.app.close(), narrow.app.close()]);
    await dropPrefix(prefix);
  });

  it('never starts more than the RPM in a window, and uses at least 90% of it under backlog', async () => {
    const jobs = await run(api, Array.from({ length: 100 }, (_, i) => ({ request: chat(`rpm ${i}`) })));
    expect(jobs.every((j) => j.status === 'succeeded')).toBe(true);
    // A job's record ends a moment before BullMQ completes its hop: wait for the last hops.
    const queue = api.runtime.queues.get('limited');
    await waitFor(async () => (await queue.getJobCounts('completed')).completed === 100, 5000);
    const hops = await queue.getJobs(['completed'], 0, 200);
    expect(hops).toHaveLength(100);
    const ws = windows(hops.map((h) => h.processedOn!), WINDOW);
    expect(Math.max(...ws.map((w) => w.length))).toBeLessThanOrEqual(RPM);
    // Under backlog the limit is used, not wasted: full windows back to back.
    const full = ws.slice(0, -1);
    expect(full.every((w) => w.length >= RPM * 0.9)).toBe(true);
    const span = ws.at(-1)![0]! - ws[0]![0]!;
    const rate = (full.flat().length / span) * WINDOW;
    expect(rate).toBeGreaterThanOrEqual(RPM * 0.9);
    // All three processes took part.
    const pids = new Set(workers.flatMap((w) => w.lines.filter((l) => l.msg === 'attempt' && l.provider === 'limited').map((l) => l.pid)));
    expect(pids.size).toBe(3);
  });

  it('never has more calls in flight than max_in_flight, across processes', async () => {
    const jobs = await run(api, Array.from({ length: 60 }, (_, i) => ({ task: 'narrow', request: chat(`narrow ${i}`) })));
    expect(jobs.every((j) => j.status === 'succeeded')).toBe(true);
    expect(narrow.stats.max_in_flight).toBeLessThanOrEqual(4);
    expect(narrow.stats.max_in_flight).toBeGreaterThanOrEqual(3);
  });
});

describe('token budgets and per-model limits', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('keeps the tokens used per window under the TPM, reserving from an estimate', async () => {
    const mock = await startMock();
    const TPM = 100;
    const config = configFor({ p: mock }, { models: { fast: ['p/m'] } });
    config.providers.p = { ...config.providers.p!, tpm: TPM, rate_window_ms: 1000 };
    const broker = await startBroker(config);
    cleanup.push(() => mock.app.close(), () => broker.close(), () => dropPrefix(broker.prefix));
    // A small max_tokens keeps the estimate close to what the mock reports, so the budget binds on real use.
    const request = (i: number) => ({ ...chat(`tokens ${i % 10}`), max_tokens: 10 });
    const estimate = estimateTokens(request(0));
    const t0 = Date.now();
    const jobs = await run(broker, Array.from({ length: 20 }, (_, i) => ({ request: request(i) })));
    expect(jobs.every((j) => j.status === 'succeeded')).toBe(true);
    const used = jobs.reduce((s, j) => s + j.usage.total_tokens, 0);
    expect(used).toBeGreaterThan(3 * TPM);
    // Each window's calls go out together as it opens; the bursts are the windows, each within the TPM.
    const calls = [...mock.stats.timeline].sort((a, b) => a.at - b.at);
    const bursts: (typeof calls)[] = [];
    for (const c of calls) {
      const last = bursts.at(-1);
      if (last && c.at - last.at(-1)!.at < 300) last.push(c);
      else bursts.push([c]);
    }
    for (const b of bursts) expect(b.reduce((s, c) => s + c.tokens, 0)).toBeLessThanOrEqual(TPM);
    expect(bursts.length).toBeGreaterThanOrEqual(Math.ceil((jobs.length * estimate) / TPM));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
  });

  it('limits one model without holding back the provider\'s other models', async () => {
    const mock = await startMock();
    const config = configFor({ p: mock }, { models: { fast: ['p/free'], capped: ['p/capped'] } });
    config.providers.p = { ...config.providers.p!, rate_window_ms: 1000, models: { capped: { rpm: 5 } } };
    const broker = await startBroker(config);
    cleanup.push(() => mock.app.close(), () => broker.close(), () => dropPrefix(broker.prefix));
    const t0 = Date.now();
    const capped = run(broker, Array.from({ length: 12 }, (_, i) => ({ model: 'capped', request: chat(`capped ${i}`) })));
    const free = await run(broker, Array.from({ length: 20 }, (_, i) => ({ model: 'fast', request: chat(`free ${i}`) })));
    expect(free.every((j) => j.status === 'succeeded')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1500);
    const cappedJobs = await capped;
    expect(cappedJobs.every((j) => j.status === 'succeeded')).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    const starts = mock.stats.timeline.filter((c) => c.model === 'capped').map((c) => c.at).sort((a, b) => a - b);
    expect(starts).toHaveLength(12);
    // The budget is a fixed window: each window's calls go out together as it opens (the mock
    // answers at once), so bursts separated by pauses are the windows. None holds more than 5.
    const bursts: number[][] = [];
    for (const t of starts) {
      const last = bursts.at(-1);
      if (last && t - last.at(-1)! < 300) last.push(t);
      else bursts.push([t]);
    }
    expect(bursts.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...bursts.map((b) => b.length))).toBeLessThanOrEqual(5);
  });
});
