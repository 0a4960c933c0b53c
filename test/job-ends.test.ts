import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { moveToFinished } from 'bullmq/dist/esm/scripts/moveToFinished-14.js';
import { version as bullmqVersion } from 'bullmq/dist/esm/version.js';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { hopJobId } from '../src/queues/provider-queues.js';
import { EmbeddedRedis } from '../src/redis/embedded.js';
import { FinishRiders } from '../src/redis/scripts.js';
import { chat, completedHop, configFor, dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix, waitFor, withRedis } from './support/broker.js';
import { startFleet } from './support/fleet.js';

/*
 * Every accepted job ends in a state its caller can see, and every call that happened is on the
 * record with what it cost, whatever ended the job and however long it ran.
 */
describe('how jobs end, and what is kept of them', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  async function broker(mockBehaviour: Partial<MockServer['behaviour']>, extra: Record<string, unknown> = {}, opts: { workers?: boolean } = {}) {
    const mock = await startMock(mockBehaviour);
    const b = await startBroker(configFor({ p: mock }, extra), opts.workers === false ? { workers: undefined } : {});
    cleanup.push(() => mock.app.close(), () => b.close(), () => dropPrefix(b.prefix));
    return { b, mock };
  }
  const pttl = (b: TestBroker, id: string) => withRedis((redis) => redis.pttl(b.runtime.store.keys.job(id)));

  it('keeps a record until its job ends, however long it runs, then for job_ttl_s', async () => {
    const { b } = await broker({ latencyMs: 3500 }, { retention: { job_ttl_s: 2 } });
    const { body } = await b.call('POST', '/v1/jobs', { request: chat('a long one') });
    await new Promise((r) => setTimeout(r, 2500));
    // Past job_ttl_s since creation and still running: still there, with no expiry at all.
    const running = await b.call('GET', `/v1/jobs/${body.id}`);
    expect(running.status).toBe(200);
    expect(running.body.status).toBe('running');
    expect(await pttl(b, body.id)).toBe(-1);
    const done = (await b.call('GET', `/v1/jobs/${body.id}?wait=10`)).body;
    expect(done.status).toBe('succeeded');
    expect(done.result.object).toBe('chat.completion');
    expect((await b.runtime.store.tenantTotals('default')).queued).toBe(0);
    // Now it expires job_ttl_s after it ended.
    const ttl = await pttl(b, body.id);
    expect(ttl).toBeGreaterThan(1000);
    expect(ttl).toBeLessThanOrEqual(2000);
  });

  it('stops the provider call of a job cancelled while it runs, and records the call', async () => {
    const { b, mock } = await broker({ latencyMs: 5000 });
    const before = await b.runtime.store.providerTotals('p');
    const { body } = await b.call('POST', '/v1/jobs', { request: chat('stop me') });
    await waitFor(async () => (await b.call('GET', `/v1/jobs/${body.id}`)).body.status === 'running');
    await waitFor(async () => mock.stats.calls === 1);
    const cancelled = await b.call('POST', `/v1/jobs/${body.id}/cancel`);
    expect(cancelled.body.status).toBe('cancelled');
    // The call is hung up within moments, not after the provider's 5 s.
    await waitFor(async () => mock.stats.aborted === 1, 1500);
    const job = await waitFor(async () => {
      const j = (await b.call('GET', `/v1/jobs/${body.id}`)).body;
      return j.attempts.length > 0 ? j : null;
    }, 3000);
    expect(job.status).toBe('cancelled');
    expect(job.attempts).toEqual([expect.objectContaining({ provider: 'p', outcome: 'cancelled', error: expect.objectContaining({ type: 'cancelled' }) })]);
    expect((await b.runtime.store.providerTotals('p')).attempts - before.attempts).toBe(1);
    // Cancelling it again does nothing, and says so.
    const again = await b.call('POST', `/v1/jobs/${body.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'job_not_cancellable', message: expect.stringContaining('already been cancelled') });
  });

  it('records a call that answered after its job had ended, with its tokens and cost, and leaves the job as it ended', async () => {
    // The store's own path, step by step as a worker takes it, with the cancel landing between
    // the call's answer and its settle: the one order a stopped call cannot show.
    const { b } = await broker({}, { auth: { api_keys: [{ name: 't', key: 'sy-late-tenant-key-0123456789' }] } }, { workers: false });
    const { store } = b.runtime;
    const { job } = await b.runtime.intake.submit({ priority: 5, metadata: {}, request: { messages: [{ role: 'user', content: 'late' }] } }, { tenant: 't' });
    expect((await store.start(job.id, 0)).kind).toBe('ok');
    expect((await store.end(job.id, 'cancelled')).kind).toBe('ended');
    const usage = { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 };
    const attempt = { hop: 0, provider: 'p', model: 'model-a', outcome: 'succeeded' as const, started_at: Date.now(), latency_ms: 20, usage, cost_usd: 0.25 };
    const before = await store.tenantTotals('t');
    expect(await store.settle(job.id, 0, attempt, { status: 'succeeded', result: { object: 'chat.completion', choices: [] }, usage, cost_usd: 0.25 })).toBe('ended');
    await store.recordLate(job.id, { ...attempt, outcome: 'discarded' });
    const after = await store.get(job.id);
    expect(after).toMatchObject({ status: 'cancelled', result: null, usage: null });
    expect(after!.attempts).toEqual([expect.objectContaining({ outcome: 'discarded', usage, cost_usd: 0.25 })]);
    const totals = await store.tenantTotals('t');
    expect(totals.prompt_tokens - before.prompt_tokens).toBe(100);
    expect(totals.month_spend_usd - before.month_spend_usd).toBeCloseTo(0.25, 9);
  });

  it('charges a TPM window for what calls really used, past their estimate', async () => {
    // Each call reserves about 20 tokens (max_tokens 10) and then reports 5,000.
    const { b, mock } = await broker({ reportCompletionTokens: 5000 }, {}, {});
    b.config.providers.p!.tpm = 1000;
    b.config.providers.p!.rate_window_ms = 3000;
    const request = { ...chat('hi'), max_tokens: 10 };
    const first = (await b.call('POST', '/v1/jobs', { request })).body;
    const done = (await b.call('GET', `/v1/jobs/${first.id}?wait=10`)).body;
    expect(done.usage.completion_tokens).toBe(5000);
    // The window now holds what was used, not what was guessed.
    expect(await b.runtime.budgets.tokensUsed('p')).toBeGreaterThanOrEqual(5000);
    // So the next call waits for the window to end instead of running at once.
    const second = (await b.call('POST', '/v1/jobs', { request })).body;
    const next = (await b.call('GET', `/v1/jobs/${second.id}?wait=15`)).body;
    expect(next.status).toBe('succeeded');
    // (Measured at the provider: a job's started_at is when a worker first took it.)
    const [a, c] = mock.stats.timeline;
    expect(c!.at - a!.at).toBeGreaterThanOrEqual(2000);
  });

  it("caps a provider's Retry-After at max_retry_after_ms", async () => {
    const { b, mock } = await broker({ rateLimitRate: 1, retryAfterS: 86_400 });
    b.config.providers.p!.max_retry_after_ms = 1500;
    const { body } = await b.call('POST', '/v1/jobs', { request: chat() });
    await waitFor(async () => mock.stats.calls >= 1);
    await waitFor(async () => (await b.call('GET', `/v1/jobs/${body.id}`)).body.attempts.length > 0);
    const p = (await b.call('GET', '/v1/providers')).body.data[0];
    expect(p.queue.paused_for_ms).toBeGreaterThan(0);
    expect(p.queue.paused_for_ms).toBeLessThanOrEqual(1500);
    mock.behaviour.rateLimitRate = 0;
    expect((await b.call('GET', `/v1/jobs/${body.id}?wait=10`)).body.status).toBe('succeeded');
  });

  it('counts waiting hops the same in /metrics as in GET /v1/providers', async () => {
    const { b } = await broker({}, {}, { workers: false });
    for (let i = 0; i < 3; i++) await b.call('POST', '/v1/jobs', { request: chat() });
    expect((await b.call('GET', '/v1/providers')).body.data[0].queue.waiting).toBe(3);
    const text = await (await fetch(`${b.url}/metrics`)).text();
    expect(text).toMatch(/^switchyard_queue_jobs\{provider="p",state="waiting"\} 3$/m);
    expect(text).not.toMatch(/state="prioritized"/);
  });

  it('settles a job whose hop lost its lock during the call, and the hop\'s re-run once the lock lapses calls no one', { timeout: 30_000 }, async () => {
    const { b, mock } = await broker({ latencyMs: 1500 }, { workers: { lock_ms: 10_000, stalled_interval_ms: 500 } });
    const { body } = await b.call('POST', '/v1/jobs', { request: chat('lose the lock') });
    await waitFor(async () => mock.stats.calls === 1);
    const queue = b.runtime.queues.get('p');
    // Another worker holds the hop's lock by the time the call ends (as when this one's event loop
    // stalled past lock_ms and the hop was taken again): BullMQ refuses the hop's finish, and the
    // settle that rides on it must have gone first all the same. The lock lapses 3 s later.
    await withRedis((redis) => redis.set(`${queue.keys['']}${hopJobId(body.id, 0)}:lock`, 'another-worker', 'PX', 3000));
    const done = (await b.call('GET', `/v1/jobs/${body.id}?wait=10`)).body;
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toEqual([expect.objectContaining({ outcome: 'succeeded' })]);
    // The stalled check hands the lockless hop back; its re-run finds the job ended and calls no one.
    const hop = await waitFor(async () => {
      const h = await queue.getJob(hopJobId(body.id, 0));
      return h && (await h.getState()) === 'completed' && typeof h.returnvalue === 'string' ? h : null;
    }, 15_000);
    expect(hop.returnvalue).toBe('nothing to do: the job has already succeeded');
    expect(mock.stats.calls).toBe(1);
    expect((await b.runtime.store.get(body.id))!.attempts).toHaveLength(1);
  });

  /** A job claimed at hop 0 with no workers running, and a settle of a success for it that rides on a finish of the hop `bullKey`. */
  async function claimedWithRiders() {
    const { b } = await broker({}, {}, { workers: false });
    const { body } = await b.call('POST', '/v1/jobs', { request: chat() });
    const { store } = b.runtime;
    expect((await store.start(body.id, 0, Date.now(), undefined, 60_000)).kind).toBe('ok');
    const riders = new FinishRiders();
    const attempt = { hop: 0, provider: 'p', model: 'model-a', outcome: 'succeeded' as const, started_at: Date.now(), latency_ms: 5 };
    const settle = (answer: number, bullKey: string) => store.settleOnFinish(riders, body.id, 0, attempt, { status: 'succeeded', result: { answer }, usage: null, cost_usd: null }, { bullKey, lines: [] });
    return { b, body, store, riders, settle };
  }

  it('settles alone, once its workers have stopped, a hop that succeeded but whose finish never ran', async () => {
    const { b, body, store, riders, settle } = await claimedWithRiders();
    // BullMQ skips a hop's finish once its connection is closing: the settle handed to it waits.
    const settled = settle(42, 'a-hop-never-finished');
    expect((await b.call('GET', `/v1/jobs/${body.id}`)).body.status).toBe('running');
    await store.settleAlone(riders.leftovers());
    expect(await settled).toBe('applied');
    const job = (await b.call('GET', `/v1/jobs/${body.id}`)).body;
    expect(job.status).toBe('succeeded');
    expect(job.result).toEqual({ answer: 42 });
    expect(job.attempts).toEqual([expect.objectContaining({ outcome: 'succeeded', provider: 'p' })]);
  });

  it('sends alone the settle of a hop\'s second run when the first run\'s settle still waits for its finish', async () => {
    const { b, body, store, riders, settle } = await claimedWithRiders();
    // A stalled hop re-run in the same process while its first run's settle waits for a finish.
    const first = settle(1, 'one-hop');
    expect(await settle(2, 'one-hop')).toBe('applied');
    expect((await b.call('GET', `/v1/jobs/${body.id}`)).body.result).toEqual({ answer: 2 });
    await store.settleAlone(riders.leftovers());
    // The first run's finish comes second: the job had ended, and that call is for the late record.
    expect(await first).toBe('ended');
  });

  it('settles alone a hop BullMQ finished without carrying its settle', async () => {
    const { b } = await broker({});
    // A BullMQ that ran its finish some other way than the one the settle boards: the workers'
    // connection is given BullMQ's own script under its name, in place of the one settles ride on.
    const connection = (b.runtime.pool as unknown as { deps: { connection: Redis } }).deps.connection;
    const name = `${moveToFinished.name}:${bullmqVersion}`;
    connection.defineCommand('plainFinish', { numberOfKeys: moveToFinished.keys, lua: moveToFinished.content });
    const commands = connection as unknown as Record<string, (args: unknown[]) => Promise<unknown>>;
    commands[name] = (args) => commands.plainFinish!(args);
    const { body } = await b.call('POST', '/v1/jobs', { request: chat() });
    const job = (await b.call('GET', `/v1/jobs/${body.id}?wait=10`)).body;
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toEqual([expect.objectContaining({ outcome: 'succeeded' })]);
    const hop = await completedHop(b.runtime.queues.get('p'), body.id);
    expect(hop.returnvalue).toMatch(/^succeeded in \d+ ms/);
  });

  it('refuses a mock behaviour field it does not know, rather than ignore it', async () => {
    const { mock } = await broker({}, {}, { workers: false });
    const res = await fetch(`${mock.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ latencyMS: 100 }) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('latencyMS');
    expect(mock.behaviour.latencyMs).toBe(0);
  });
});

describe('a hop BullMQ fails for stalling too often', () => {
  it('ends its job failed, visibly, instead of leaving it running for ever', { timeout: 90_000 }, async () => {
    const mock = await startMock({ latencyMs: 60_000 });
    const fleet = await startFleet({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: { p: { type: 'openai', base_url: mock.baseUrl, timeout_ms: 120_000 } },
      models: { fast: ['p/m'] },
      tasks: { default: 'fast' },
      // Recovered at most once from a dead worker; the checks come quickly.
      workers: { lock_ms: 1000, stalled_interval_ms: 500, max_stalled: 1 },
    });
    try {
      const { body } = await fleet.api.call('POST', '/v1/jobs', { request: chat('kills its workers') });
      const waiting = fleet.api.call('GET', `/v1/jobs/${body.id}?wait=60`);
      for (let kill = 0; kill < 2; kill++) {
        const worker = await fleet.spawnWorker();
        await waitFor(async () => mock.stats.calls === kill + 1, 20_000);
        await worker.stop('SIGKILL');
        // Its connection closes with it (the mock's handler sleeps on, so in_flight stays up).
        await waitFor(async () => mock.stats.aborted === kill + 1, 5000);
      }
      // The next worker's stalled check fails the hop; the sweep ends the job.
      await fleet.spawnWorker();
      const ended = (await waiting).body;
      expect(ended.status).toBe('failed');
      expect(ended.error).toMatchObject({ type: 'internal_error', message: expect.stringContaining('lost with its worker more than workers.max_stalled (1) times') });
      expect((await fleet.api.runtime.store.tenantTotals('default')).queued).toBe(0);
    } finally {
      await fleet.close();
      await mock.app.close();
    }
  });
});

describe('a hop whose settle meets a frozen Redis', () => {
  // Unproven, the call's trial outcome goes to the breaker first, on a connection that gives up
  // after 2 s: that must not fail the hop either.
  it('waits for Redis to answer, and its job ends once, with its one call', { timeout: 60_000 }, async () => {
    await frozenSettle({ proven: false });
  });

  // Proven, the provider's breaker records nothing for a success: the settle is the first command
  // after the call, and it alone meets the frozen Redis for longer than the store's command timeout.
  it('waits for Redis to answer with the provider proven, the settle the first command to meet it', { timeout: 60_000 }, async () => {
    await frozenSettle({ proven: true });
  });

  async function frozenSettle({ proven }: { proven: boolean }) {
    // Its own Redis: this test freezes it (SIGSTOP), as a stalled or partitioned Redis looks.
    const redis = await EmbeddedRedis.start({ dir: mkdtempSync(join(tmpdir(), 'switchyard-fault-')), persist: false });
    const mock = await startMock({ latencyMs: 1500 });
    const b = await startBroker(configFor({ p: mock }, { redis: { url: redis.url, prefix: testPrefix() } }));
    try {
      if (proven) {
        const first = (await b.call('POST', '/v1/jobs', { request: chat('proves the provider') })).body;
        expect((await b.call('GET', `/v1/jobs/${first.id}?wait=20`)).body.status).toBe('succeeded');
        await waitFor(async () => b.runtime.breakers.view('p').state === 'closed' && b.runtime.breakers.view('p').healthy);
      }
      const callsBefore = mock.stats.calls;
      const { body } = await b.call('POST', '/v1/jobs', { request: chat('settled on a frozen Redis') });
      await waitFor(async () => mock.stats.in_flight === 1);
      // Frozen from mid-call until well after the call answers.
      process.kill(redis.pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 4500));
      process.kill(redis.pid, 'SIGCONT');
      const ended = (await b.call('GET', `/v1/jobs/${body.id}?wait=20`)).body;
      expect(ended.status).toBe('succeeded');
      // The settle waited for Redis rather than give up and call again.
      expect(mock.stats.calls - callsBefore).toBe(1);
      expect(b.logs.lines.filter((l) => l.msg === 'hop processing failed inside the broker; trying again')).toEqual([]);
      expect(ended.attempts.map((a: { outcome: string; latency_ms: number }) => a.outcome)).toEqual(['succeeded']);
      await completedHop(b.runtime.queues.get('p'), body.id);
      expect((await b.runtime.store.tenantTotals('default')).queued).toBe(0);
    } finally {
      try {
        process.kill(redis.pid, 'SIGCONT');
      } catch {
        // already running
      }
      await b.close();
      await mock.app.close();
      await redis.stop();
    }
  }
});
