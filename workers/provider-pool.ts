import { setMaxListeners } from 'node:events';
import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../src/log.js';
import { type HopData, NO_RPM_LIMIT, queueName } from '../src/queues/provider-queues.js';
import { HopProcessor, type HopProcessorDeps } from './hop-processor.js';

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

  constructor(private readonly deps: HopProcessorDeps & { connection: Redis }) {
    // Every call in flight listens on this one signal; that is not a leak.
    setMaxListeners(0, this.shutdown.signal);
  }

  async start(providers: string[]): Promise<void> {
    const { config, connection, log, store, queues } = this.deps;
    for (const provider of providers) {
      const settings = config.providers[provider];
      if (!settings) throw new Error(`unknown provider "${provider}"`);
      await queues.get(provider).setGlobalConcurrency(settings.max_in_flight);
      const processor = new HopProcessor(provider, { ...this.deps, shutdown: this.shutdown.signal });
      const worker = new Worker<HopData>(queueName(provider), (job: Job<HopData>, token?: string) => processor.process(job, token), {
        connection,
        prefix: config.redis.prefix,
        concurrency: settings.max_in_flight,
        limiter: { max: settings.rpm ?? NO_RPM_LIMIT, duration: settings.rate_window_ms },
        lockDuration: config.workers.lock_ms,
        stalledInterval: config.workers.stalled_interval_ms,
        maxStalledCount: config.workers.max_stalled,
        // Workers idle on an empty queue look again every second: a queue-wide pause (a 429, a spent
        // token budget) leaves no marker to wake them when it ends, so this bounds the extra wait.
        drainDelay: 1,
      });
      // A hop whose processing itself failed (Redis unreachable, a bug) must still end its job visibly.
      worker.on('failed', (job, err) => {
        if (!job || job.attemptsMade < (job.opts.attempts ?? 1)) return;
        log.error({ job: job.data.id, hop: job.data.hop, provider, err: err.message }, 'hop failed inside the broker');
        void store
          .settle(job.data.id, job.data.hop,
            { hop: job.data.hop, provider, model: '', outcome: 'failed', started_at: Date.now(), latency_ms: 0, error: { type: 'internal_error', message: err.message } },
            { status: 'failed', error: { type: 'internal_error', message: 'the broker could not process this job' } })
          .catch((e: unknown) => log.error({ job: job.data.id, err: (e as Error).message }, 'could not record the failure'));
      });
      worker.on('error', (err) => log.error({ provider, err: err.message }, 'worker error'));
      this.workers.push(worker);
    }
    log.info({ providers }, 'provider worker pools started');
  }

  /**
   * Stops taking hops and lets the ones in flight finish for up to `workers.shutdown_grace_ms`;
   * then aborts their calls, and each hop goes back to its queue for another worker.
   */
  async close(): Promise<void> {
    const grace = setTimeout(() => this.shutdown.abort(), this.deps.config.workers.shutdown_grace_ms);
    try {
      // With Redis gone there is no hop to hand back and nothing to wait for: calls are aborted now.
      const lost = this.deps.connection.status !== 'ready';
      if (lost) this.shutdown.abort();
      await Promise.all(this.workers.map((w) => w.close(lost)));
    } finally {
      clearTimeout(grace);
    }
  }
}
