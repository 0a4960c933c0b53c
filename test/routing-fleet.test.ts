import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRecord } from '../src/store/job-record.js';
import { chat, type MockServer, redisUrl, startMock, testPrefix, waitFor, withRedis } from './support/broker.js';
import { startFleet } from './support/fleet.js';
import type { BrokerProcess } from './support/process.js';

/**
 * Routing strategies with state shared through Redis, as deployed: an API in this process, three
 * worker processes on one Redis, each provider a mock over real HTTP. Every provider answers with
 * ten completion tokens, so latency per output token is its latency over ten.
 */
const NAMES = ['wa', 'wb', 'la', 'lb', 'ha', 'hb', 'ba', 'bb', 'dear', 'cheap'] as const;
type Name = (typeof NAMES)[number];
const CONCURRENCY = 4;

describe('routing across three worker processes', () => {
  const mocks = {} as Record<Name, MockServer>;
  let fleet: Awaited<ReturnType<typeof startFleet>>;
  let workers: BrokerProcess[];

  beforeAll(async () => {
    for (const name of NAMES) mocks[name] = await startMock({ reportCompletionTokens: 10 });
    const provider = (name: Name, extra: Record<string, unknown> = {}) => ({ type: 'openai', base_url: mocks[name].baseUrl, max_in_flight: 50, timeout_ms: 5000, ...extra });
    fleet = await startFleet({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: {
        // Zero-latency mocks in one busy test process: a burst's own queueing would read as a slowdown.
        wa: provider('wa', { health: { latency_factor: 1000 } }), wb: provider('wb', { health: { latency_factor: 1000 } }),
        // The latency pair is judged by the strategy alone: health would route the slow one away too.
        la: provider('la', { health: { latency_factor: 1000 } }), lb: provider('lb', { health: { latency_factor: 1000 } }),
        ha: provider('ha'), hb: provider('hb'),
        ba: provider('ba', { max_in_flight: CONCURRENCY, timeout_ms: 3000, health: { latency_factor: 1000 } }),
        bb: provider('bb', { max_in_flight: CONCURRENCY, timeout_ms: 3000, health: { latency_factor: 1000 } }),
        // `dear` takes 100 prompt tokens at most; every call to it costs $1 (ten completion tokens at $0.1).
        dear: provider('dear', { models: { m: { context_window: 600 } } }), cheap: provider('cheap'),
      },
      pricing: { 'dear/m': { input: 0, output: 100_000 }, 'cheap/m': { input: 0, output: 0 } },
      models: {
        split: { strategy: 'weighted', targets: [{ target: 'wa/m', weight: 3 }, { target: 'wb/m', weight: 1 }] },
        quick: { strategy: 'latency', targets: ['la/m', 'lb/m'] },
        steady: ['ha/m', 'hb/m'],
        spread: { strategy: 'least_busy', targets: ['ba/m', 'bb/m'] },
        premium: { targets: ['dear/m', 'cheap/m'], monthly_budget_usd: 10, downgrade_at: 0.5, downgrade_to: 'budget' },
        budget: ['cheap/m'],
        capped: { targets: ['dear/m'], monthly_budget_usd: 3 },
      },
      tasks: { default: 'split' },
      health: { window_ms: 3000, min_requests: 20 },
      routing: { state_refresh_ms: 100 },
      workers: { lock_ms: 2000, stalled_interval_ms: 1000 },
    });
    workers = await Promise.all([fleet.spawnWorker(), fleet.spawnWorker(), fleet.spawnWorker()]);
  }, 60_000);
  afterAll(async () => {
    await fleet?.close();
    await Promise.all(Object.values(mocks).map((m) => m.app.close()));
  });

  /** Submits `n` jobs for `model` in bulk requests of up to 500 and returns their ids. */
  async function submit(model: string, n: number, content = 'route me'): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i += 500) {
      const jobs = Array.from({ length: Math.min(500, n - i) }, (_, k) => ({ model, request: chat(`${content} ${i + k}`) }));
      const res = await fleet.api.call('POST', '/v1/jobs/bulk', { jobs });
      expect(res.status).toBe(202);
      ids.push(...(res.body.data as { id: string }[]).map((j) => j.id));
    }
    return ids;
  }

  async function finished(ids: string[], timeoutMs = 60_000): Promise<JobRecord[]> {
    await waitFor(async () => ids.every((id) => fleet.ends.has(id)), timeoutMs, 50);
    const jobs = (await fleet.api.runtime.store.getMany(ids)) as JobRecord[];
    expect(jobs.filter((j) => j.status !== 'succeeded').map((j) => [j.id, j.status, j.error])).toEqual([]);
    return jobs;
  }

  /** Which target answered each job. */
  const answeredBy = (jobs: JobRecord[]) => {
    const counts: Record<string, number> = {};
    for (const j of jobs) {
      const last = j.attempts.at(-1)!;
      counts[`${last.provider}/${last.model}`] = (counts[`${last.provider}/${last.model}`] ?? 0) + 1;
    }
    return counts;
  };

  it('weighted: splits 2,000 jobs 3:1, each share within four standard deviations of a fair draw', async () => {
    const jobs = await finished(await submit('split', 2000));
    const counts = answeredBy(jobs);
    console.log(`weighted 3:1 over 2,000 jobs: ${JSON.stringify(counts)}`);
    // Each job is an independent draw: a count is binomial, sd = sqrt(n p (1 - p)) = 19.4 jobs. Four
    // of them (78) fails a fair split about once in 16,000 runs (±10% of the smaller share, 50, was
    // 2.6 of them: about once in a hundred), and still refuses 2:1 (667) or 4:1 (400).
    const bound = 4 * Math.sqrt(2000 * 0.75 * 0.25);
    expect(Math.abs((counts['wa/m'] ?? 0) - 1500)).toBeLessThanOrEqual(bound);
    expect(Math.abs((counts['wb/m'] ?? 0) - 500)).toBeLessThanOrEqual(bound);
    // The calls were spread over the three processes, not made by one.
    const perWorker = workers.map((w) => w.lines.filter((l) => l.msg === 'attempt' && String(l.provider).startsWith('w')).length);
    expect(perWorker.every((n) => n > 100)).toBe(true);
    expect(jobs[0]!.routing).toMatchObject({ alias: 'split', strategy: 'weighted' });
  }, 90_000);

  it('least_busy: equal targets split within 5% of even, and a slower one is given less', async () => {
    mocks.ba.behaviour.latencyMs = 15;
    mocks.bb.behaviour.latencyMs = 15;
    const keys = fleet.api.runtime.store.keys;
    const waves = async (tag: string) => {
      const ids: string[] = [];
      // Jobs arrive in waves, as they would from callers, while earlier ones are still running.
      for (let wave = 0; wave < 8; wave++) {
        ids.push(...(await submit('spread', 50, `${tag} ${wave}`)));
        await new Promise((r) => setTimeout(r, 100));
      }
      return { ids, counts: answeredBy(await finished(ids)) };
    };
    const even = await waves('even');
    const share = even.ids.length / 2;
    expect(even.counts['ba/m']! + even.counts['bb/m']!).toBe(even.ids.length);
    // Least busy follows what each target has finished, so equal targets split as evenly as their
    // calls went: a worker process the machine ran late for a moment makes its target's share
    // smaller. Within 5% (210 of 400; once 205 in a loaded CI run, past the share plus the concurrency
    // this bound was before). A random pick, sd 10, would miss it about one run in three; the
    // uneven half below tells least busy from random.
    expect(even.counts['ba/m']).toBeLessThanOrEqual(share * 1.05);
    expect(even.counts['bb/m']).toBeLessThanOrEqual(share * 1.05);
    // No lease outlives its job.
    await withRedis(async (redis) => {
      expect(await redis.zcard(keys.inflight('ba/m', keys.prefix))).toBe(0);
      expect(await redis.zcard(keys.inflight('bb/m', keys.prefix))).toBe(0);
    });

    // Busy is what is assigned and unfinished, across every process: the slow target's jobs pile up, so it is given fewer.
    mocks.ba.behaviour.latencyMs = 120;
    mocks.bb.behaviour.latencyMs = 5;
    const uneven = await waves('uneven');
    console.log(`least_busy, 400 jobs: equal targets ${JSON.stringify(even.counts)}; 120 ms against 5 ms ${JSON.stringify(uneven.counts)}`);
    // Equal targets split 200/200 within a few jobs; here the fast one had 1.47–1.84 times the slow
    // one's share over six runs on this machine, so 1.25 tells "given less" from an even split.
    expect(uneven.counts['bb/m']!).toBeGreaterThan(uneven.counts['ba/m']! * 1.25);
    const job = (await fleet.api.runtime.store.get(uneven.ids.at(-1)!))!;
    expect(job.routing).toMatchObject({ alias: 'spread', strategy: 'least_busy' });
    expect(job.routing!.candidates.every((c) => typeof c.score === 'number')).toBe(true);
  }, 120_000);

  it('latency: sends at least 80% to the 5 ms target over the 80 ms one, and follows them when they swap', async () => {
    mocks.la.behaviour.latencyMs = 5;
    mocks.lb.behaviour.latencyMs = 80;
    // Warm-up: both get measured (an unmeasured target goes first), and the workers flush.
    await finished(await submit('quick', 40, 'warm'));
    await new Promise((r) => setTimeout(r, 1500));
    const first = answeredBy(await finished(await submit('quick', 300, 'fast-first')));
    expect(first['la/m']! / 300).toBeGreaterThanOrEqual(0.8);

    mocks.la.behaviour.latencyMs = 80;
    mocks.lb.behaviour.latencyMs = 5;
    // Waves of jobs as callers would send them: the slow one's figures climb, exploration shows the other is fast now.
    let shifted = false;
    for (let wave = 0; wave < 20 && !shifted; wave++) {
      const counts = answeredBy(await finished(await submit('quick', 40, `swap ${wave}`)));
      shifted = (counts['lb/m'] ?? 0) / 40 >= 0.8;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(shifted).toBe(true);
    await new Promise((r) => setTimeout(r, 1200));
    const after = answeredBy(await finished(await submit('quick', 300, 'fast-second')));
    console.log(`latency, 300 jobs: before the swap ${JSON.stringify(first)}, after ${JSON.stringify(after)}`);
    expect(after['lb/m']! / 300).toBeGreaterThanOrEqual(0.8);
    const views = (await fleet.api.call('GET', '/v1/providers')).body.data as { name: string; targets: { target: string; latency_ms_per_token: number }[] }[];
    const perToken = (name: string) => views.find((v) => v.name === name)!.targets.find((t) => t.target === `${name}/m`)!.latency_ms_per_token;
    expect(perToken('la')).toBeGreaterThan(perToken('lb'));
  }, 120_000);

  it('health: a provider made slow (not failing) is degraded and traffic leaves it, then it recovers and traffic returns', async () => {
    // Small waves, so a burst's own queueing in this one test process does not swamp the mock's latency.
    const share = async (wave: string) => {
      const counts = answeredBy(await finished(await submit('steady', 20, wave)));
      return (counts['ha/m'] ?? 0) / 20;
    };
    mocks.ha.behaviour.latencyMs = 2;
    mocks.hb.behaviour.latencyMs = 2;
    // The baseline: ha takes every job of an ordered alias while it is healthy.
    for (let i = 0; i < 3; i++) expect(await share(`base ${i}`)).toBe(1);
    await new Promise((r) => setTimeout(r, 1200));

    mocks.ha.behaviour.latencyMs = 800;
    const slowedAt = Date.now();
    const degraded = await waitFor(async () => {
      await share('slow');
      const view = ((await fleet.api.call('GET', '/v1/providers')).body.data as { name: string; health: { state: string; reason: string } }[]).find((v) => v.name === 'ha')!;
      return view.health.state === 'degraded' ? view.health : null;
    }, 40_000, 100);
    expect(degraded.reason).toBe('latency');
    const degradedAfter = Date.now() - slowedAt;
    await new Promise((r) => setTimeout(r, 300));
    // Routed around: only the jobs exploration keeps on it (5%) go there now.
    expect(await share('around')).toBeLessThanOrEqual(0.2);
    const warned = workers.flatMap((w) => w.lines).filter((l) => l.msg === 'provider degraded: routed around while an alternative exists' && l.provider === 'ha');
    expect(warned.length).toBeGreaterThanOrEqual(1);

    mocks.ha.behaviour.latencyMs = 2;
    const fastAt = Date.now();
    const state = async () => ((await fleet.api.call('GET', '/v1/providers')).body.data as { name: string; health: { state: string } }[]).find((v) => v.name === 'ha')!.health.state;
    await waitFor(async () => (await share('recovering')) >= 0.8 && (await state()) === 'healthy', 60_000, 100);
    console.log(`health: degraded ${degradedAfter} ms after the slowdown (window 3 s), traffic back ${Date.now() - fastAt} ms after recovery`);
    expect(workers.flatMap((w) => w.lines).some((l) => l.msg === 'provider healthy again' && l.provider === 'ha')).toBe(true);
  }, 150_000);

  it('budgets and context windows hold with spend counted by three processes: a big request skips the small window uncalled, the alias downgrades past half its budget, and a spent one answers 402', async () => {
    const dearCalls = mocks.dear.stats.calls;
    const big = (await fleet.api.call('POST', '/v1/jobs', { model: 'premium', request: { ...chat('z'.repeat(2400)), max_tokens: 10 } })).body.id as string;
    const [skipped] = await finished([big]);
    expect(mocks.dear.stats.calls).toBe(dearCalls);
    expect(skipped!.attempts.map((a) => a.provider)).toEqual(['cheap']);
    expect(skipped!.routing!.candidates[0]).toMatchObject({ target: 'dear/m', skipped: 'context_window', context_window: 600 });

    // Six jobs at $1 across the three workers: past $5 (half of $10) the alias downgrades.
    await finished(await submit('premium', 6, 'spend'));
    const downgraded = await waitFor(async () => {
      const res = await fleet.api.call('POST', '/v1/jobs', { model: 'premium', request: chat('after the spend') });
      const [job] = await finished([res.body.id as string]);
      return job!.routing!.downgraded ? job : null;
    }, 10_000, 100);
    expect(downgraded.routing).toMatchObject({ alias: 'budget', downgraded: { from: 'premium', reason: 'alias_budget' } });
    expect(downgraded.attempts.map((a) => a.provider)).toEqual(['cheap']);

    const capped = await submit('capped', 3, 'cap');
    await finished(capped);
    // Spend is read every 100 ms here: a job or two may still pass between the spend and the read.
    const refused = await waitFor(async () => {
      const res = await fleet.api.call('POST', '/v1/jobs', { model: 'capped', request: chat('over the cap') });
      if (res.status === 202) capped.push(res.body.id as string);
      return res.status === 402 ? res : null;
    }, 10_000, 100);
    expect(refused.body.error).toMatchObject({ code: 'alias_budget_exceeded', type: 'budget_exceeded_error' });
    expect(capped.length).toBeLessThanOrEqual(5);
    // Every process's spend is in the one ledger: $1 a call, counted once each.
    const jobs = await finished(capped);
    const month = new Date().toISOString().slice(0, 7);
    const spent = await withRedis((r) => r.hget(fleet.api.runtime.store.keys.alias('capped', fleet.api.runtime.store.keys.prefix), `spend_e10:${month}`));
    expect(Number(spent) / 1e10).toBeCloseTo(jobs.reduce((n, j) => n + j.cost_usd!, 0), 6);
    expect(Number(spent) / 1e10).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('least_busy: a worker SIGKILLed mid-call leaves no in-flight count behind', async () => {
    // Calls outlast the kill; the kill comes well before their 3 s timeout (which would move them on).
    mocks.ba.behaviour.latencyMs = 8000;
    mocks.bb.behaviour.latencyMs = 8000;
    const keys = fleet.api.runtime.store.keys;
    const ids = await submit('spread', 6, 'killed');
    await waitFor(async () => mocks.ba.stats.in_flight + mocks.bb.stats.in_flight >= 6, 20_000);
    const count = (redis: Parameters<Parameters<typeof withRedis>[0]>[0]) =>
      Promise.all(['ba/m', 'bb/m'].map((t) => redis.zcount(keys.inflight(t, keys.prefix), Date.now(), '+inf'))).then(([a, b]) => a! + b!);
    await withRedis(async (redis) => expect(await count(redis)).toBe(6));
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    // No process is left to end these calls, yet their leases run out with the call's timeout (3 s, and 5 s of margin).
    await withRedis((redis) => waitFor(async () => (await count(redis)) === 0, 15_000, 100));
    const statuses = (await fleet.api.runtime.store.getMany(ids)).map((j) => j!.status);
    expect(statuses.every((s) => s === 'running')).toBe(true);

    // A new worker picks the hops up again; the leases are taken again while they run, and gone when they end.
    mocks.ba.behaviour.latencyMs = 10;
    mocks.bb.behaviour.latencyMs = 10;
    await fleet.spawnWorker();
    await finished(ids, 60_000);
    await withRedis(async (redis) => {
      expect(await redis.zcard(keys.inflight('ba/m', keys.prefix))).toBe(0);
      expect(await redis.zcard(keys.inflight('bb/m', keys.prefix))).toBe(0);
    });
    expect([...fleet.ends.entries()].filter(([id, n]) => ids.includes(id) && n !== 1)).toEqual([]);
  }, 120_000);
});
