import { setMaxListeners } from 'node:events';
import { type Job, type JobJson, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../src/log.js';
import { type HopData, hopRetention, NO_RPM_LIMIT, queueName, queuePrefix } from '../src/queues/provider-queues.js';
import { bullKeyOf, callLeaseMs, type FetchedHop, HopProcessor, type HopProcessorDeps, JobEnded, WORKER } from './hop-processor.js';
import { withHopRetries } from './hop-retries.js';
import { RunningCalls } from './running-calls.js';
import { watchConnection } from '../src/redis/connection.js';
import { defineClaimOnFetch, type FinishRiders } from '../src/redis/scripts.js';

/**
 * Hands out hops with the claim BullMQ's fetch made for them (see defineClaimOnFetch), taken out of
 * the hop's data so that nothing writes it back to Redis with the data.
 */
class ClaimingWorker extends Worker<HopData> {
  protected override createJob(data: JobJson, jobId: string): Job<HopData> {
    const job = super.createJob(data, jobId) as FetchedHop;
    const hop = job.data as HopData & { syClaim?: unknown[] };
    if (hop.syClaim !== undefined) {
      job.syClaim = hop.syClaim;
      delete hop.syClaim;
    }
    return job;
  }
}

/** BullMQ's failedReason for a hop it failed in its stalled check. */
const STALLED = /stalled more than allowable limit/;

/**
 * One BullMQ worker per provider queue: the per-provider worker pools of the design.
 *
 * Limits are BullMQ's, so they hold across every worker process at once: requests per window
 * through the worker limiter (the same settings in every process; one source of truth, never
 * mixed with setGlobalRateLimit), calls in flight through the queue's global concurrency.
 *
 * Locks: a hop holds an LLM call of up to `timeout_ms`. The lock (`workers.lock_ms`, 30 s) is
 * renewed every half of it while the call runs, so a long call keeps its hop; a process that dies
 * stops renewing, and the stalled check (`workers.stalled_interval_ms`, 15 s) hands its hops to
 * another worker within about lock + interval. A hop recovered more than `workers.max_stalled`
 * times (3) is failed rather than looping forever on a call that kills its worker.
 */
export class ProviderPool {
  private readonly workers: Worker<HopData>[] = [];
  private readonly shutdown = new AbortController();
  private readonly running: RunningCalls;
  private sweeper: NodeJS.Timeout | undefined;
  /** Settles that ride on their hop's finish (see FinishRiders), when BullMQ's fetch claims hops. */
  private riders: FinishRiders | undefined;
  private warnedUncarried = false;
  /** Per provider, the newest failed hop already looked at (BullMQ's finishedOn). */
  private readonly swept = new Map<string, number>();

  constructor(private readonly deps: HopProcessorDeps & { connection: Redis }) {
    // Every call in flight listens on this one signal; that is not a leak.
    setMaxListeners(0, this.shutdown.signal);
    this.running = new RunningCalls(watchConnection(deps.connection.duplicate(), 'job cancels', deps.log), deps.store.keys.jobCancels);
  }

  async start(providers: string[]): Promise<void> {
    const { config, connection, log, store, queues } = this.deps;
    await this.running.start();
    // Unsharded, a hop's queue and its record share a slot: BullMQ's fetch claims the hop in the same step.
    const leaseMs = Object.fromEntries(providers.map((p) => [queues.get(p).keys[''], callLeaseMs(config.providers[p]!)]));
    const claim = store.fetchClaim(leaseMs);
    if (claim) {
      this.riders = defineClaimOnFetch(connection, claim) ?? undefined;
      if (!this.riders) log.warn({}, 'BullMQ\'s scripts were already defined on the workers\' connection: hops are claimed after their fetch and settled before their finish, two round trips more');
    }
    for (const provider of providers) {
      const settings = config.providers[provider];
      if (!settings) throw new Error(`unknown provider "${provider}"`);
      await queues.get(provider).setGlobalConcurrency(settings.max_in_flight);
      const processor = new HopProcessor(provider, { ...this.deps, shutdown: this.shutdown.signal, running: this.running, ...(this.riders && { riders: this.riders }) });
      const process = withHopRetries((job: Job<HopData>, token?: string) => processor.process(job, token), { log, stopping: this.shutdown.signal });
      const worker = new ClaimingWorker(queueName(provider), process, {
        connection,
        name: WORKER,
        prefix: queuePrefix(config.redis, provider),
        concurrency: settings.max_in_flight,
        limiter: { max: settings.rpm ?? NO_RPM_LIMIT, duration: settings.rate_window_ms },
        lockDuration: config.workers.lock_ms,
        stalledInterval: config.workers.stalled_interval_ms,
        maxStalledCount: config.workers.max_stalled,
        // Workers idle on an empty queue look again every second: a queue-wide pause (a 429, a spent
        // token budget) leaves no marker to wake them when it ends, so this bounds the extra wait.
        drainDelay: 1,
        ...hopRetention(config.retention),
      });
      // A hop whose processing itself failed (Redis unreachable, a bug) must still end its job visibly.
      worker.on('failed', (job, err) => {
        if (!job || err instanceof JobEnded) return;
        void this.endLostHop(provider, job.data, err.message);
      });
      worker.on('error', (err) => log.error({ provider, err: err.message }, 'worker error'));
      // Fails safe: a BullMQ that finished a hop without carrying its settle (one that ran its
      // scripts some other way) leaves the settle here, and it goes alone.
      if (this.riders) {
        const riders = this.riders;
        worker.on('completed', (job) => {
          const left = riders.uncarried(bullKeyOf(job));
          if (!left) return;
          if (!this.warnedUncarried) log.warn({ provider }, 'BullMQ finished a hop without the settle it was to carry: settles go alone, one round trip more');
          this.warnedUncarried = true;
          void store.settleAlone([left]);
        });
      }
      this.workers.push(worker);
    }
    // BullMQ fails a hop that stalled past workers.max_stalled inside its stalled check, and no
    // worker hears of it: the failed sets are swept for hops whose job still waits on them.
    this.sweeper = setInterval(() => void this.sweepFailed(providers).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'failed-hop sweep failed')), config.workers.stalled_interval_ms);
    this.sweeper.unref();
    log.info({ providers }, 'provider worker pools started');
  }

  /** Ends the job of a hop BullMQ has failed for good, if the job is still at that hop (else nothing). */
  private async endLostHop(provider: string, hop: HopData, reason: string): Promise<void> {
    const { store, log } = this.deps;
    const stalled = STALLED.test(reason);
    const message = stalled
      ? `the hop was lost with its worker more than workers.max_stalled (${this.deps.config.workers.max_stalled}) times`
      : 'the broker could not process this job';
    try {
      const settled = await store.settle(hop.id, hop.hop,
        { hop: hop.hop, provider, model: '', outcome: 'failed', started_at: Date.now(), latency_ms: 0, error: { type: 'internal_error', message: reason } },
        { status: 'failed', error: { type: 'internal_error', message } });
      if (settled === 'applied') log.error({ job: hop.id, hop: hop.hop, provider, err: reason }, 'hop failed inside the broker');
    } catch (err) {
      log.error({ job: hop.id, err: (err as Error).message }, 'could not record the failure');
    }
  }

  private async sweepFailed(providers: string[]): Promise<void> {
    for (const provider of providers) {
      const queue = this.deps.queues.get(provider);
      const since = this.swept.get(provider) ?? 0;
      const ids = await this.deps.connection.zrangebyscore(queue.keys.failed!, `(${since}`, '+inf', 'WITHSCORES', 'LIMIT', 0, 200);
      if (ids.length === 0) continue;
      // Most failed hops are failed jobs, already ended by their hop: only the stalled ones are read.
      const reads = this.deps.connection.pipeline();
      for (let i = 0; i < ids.length; i += 2) reads.hmget(`${queue.keys['']}${ids[i]}`, 'failedReason', 'data');
      const fields = (await reads.exec()) ?? [];
      for (let i = 0; i < ids.length; i += 2) {
        const [reason, data] = (fields[i / 2]?.[1] as [string | null, string | null] | undefined) ?? [null, null];
        if (data && reason && STALLED.test(reason)) await this.endLostHop(provider, JSON.parse(data) as HopData, reason);
        this.swept.set(provider, Math.max(this.swept.get(provider) ?? 0, Number(ids[i + 1])));
      }
    }
  }

  /**
   * Stops taking hops and lets the ones in flight finish for up to `workers.shutdown_grace_ms`;
   * then aborts their calls, and each hop goes back to its queue for another worker.
   */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const stop = () => {
      this.shutdown.abort();
      this.running.abortAll();
    };
    const grace = setTimeout(stop, this.deps.config.workers.shutdown_grace_ms);
    try {
      // With Redis gone there is no hop to hand back and nothing to wait for: calls are aborted now.
      const lost = this.deps.connection.status !== 'ready';
      if (lost) stop();
      await Promise.all(this.workers.map((w) => w.close(lost)));
      // A worker whose connection was closing skipped the finish of a hop that had succeeded: its
      // settle goes alone, or the hop would be re-run and its provider called a second time. With
      // Redis gone it would wait for ever: those hops are re-run elsewhere once their locks lapse.
      const left = this.riders?.leftovers() ?? [];
      if (left.length > 0 && lost) this.deps.log.warn({ hops: left.length }, 'Redis is gone: hops that succeeded could not be settled, and will be run again');
      else if (left.length > 0) await this.deps.store.settleAlone(left);
    } finally {
      clearTimeout(grace);
      await this.running.close();
    }
  }
}
