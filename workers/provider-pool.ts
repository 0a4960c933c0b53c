import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { type HopData, queueName } from '../src/queues/provider-queues.js';
import { HopProcessor, type HopProcessorDeps } from './hop-processor.js';

/**
 * BullMQ settings for hops that each hold an LLM call of up to `timeout_ms`. The lock is renewed
 * every lockDuration/2 while the call runs, so a long call keeps its lock; a killed process stops
 * renewing, and the stalled check hands its hops to another worker within about
 * lockDuration + stalledInterval. A hop that stalls repeatedly is failed rather than looping.
 */
export const HOP_LOCK_MS = 30_000;
export const HOP_STALLED_INTERVAL_MS = 15_000;
export const HOP_MAX_STALLED = 3;

/** One BullMQ worker per provider queue: the per-provider worker pools of the design. */
export class ProviderPool {
  private readonly workers: Worker<HopData>[] = [];
  private readonly processor: HopProcessor;

  constructor(
    private readonly deps: HopProcessorDeps & { connection: Redis; config: Config },
  ) {
    this.processor = new HopProcessor(deps);
  }

  start(providers: string[]): void {
    const { config, connection, log, store } = this.deps;
    for (const provider of providers) {
      const settings = config.providers[provider];
      if (!settings) throw new Error(`unknown provider "${provider}"`);
      const worker = new Worker<HopData>(
        queueName(provider),
        (job: Job<HopData>) => this.processor.process(job.data.id, job.data.hop, job.opts.priority ?? 5),
        {
          connection,
          prefix: config.redis.prefix,
          concurrency: settings.max_in_flight,
          lockDuration: HOP_LOCK_MS,
          stalledInterval: HOP_STALLED_INTERVAL_MS,
          maxStalledCount: HOP_MAX_STALLED,
        },
      );
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

  /** Stops taking hops and waits for the ones in flight. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
