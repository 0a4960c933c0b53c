import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import type { Logger } from '../src/log.js';
import type { HopData } from '../src/queues/provider-queues.js';

/** Tries in all for a hop whose processing failed inside the broker. */
export const HOP_TRIES = 3;
/** The first retry's wait; each next one doubles it. */
export const RETRY_BASE_MS = 1000;

type Process = (job: Job<HopData>, token?: string) => Promise<unknown>;

/**
 * Processing a hop can fail inside the broker (a Redis error, a bug): the hop is tried again,
 * HOP_TRIES times in all, after RETRY_BASE_MS and then twice that, before BullMQ fails it (and
 * ProviderPool ends its job). BullMQ's own attempts and backoff would do the same, but they are
 * options stored with every hop, which would take its hash past the 64 bytes a listpack holds: the
 * count is kept in the hop's data instead, written only when processing fails.
 * Not retried: a hop that ended its job (UnrecoverableError, such as JobEnded), one the processor
 * moved to wait itself (DelayedError), and any while the pool is stopping.
 */
export function withHopRetries(process: Process, opts: { log: Logger; stopping: AbortSignal; baseMs?: number }): Process {
  const baseMs = opts.baseMs ?? RETRY_BASE_MS;
  return async (job, token) => {
    try {
      return await process(job, token);
    } catch (err) {
      if (err instanceof DelayedError || err instanceof UnrecoverableError) throw err;
      const faults = (job.data.faults ?? 0) + 1;
      if (faults >= HOP_TRIES || opts.stopping.aborted) throw err;
      const waitMs = baseMs * 2 ** (faults - 1);
      opts.log.warn({ job: job.data.id, hop: job.data.hop, err: (err as Error).message, faults, retry_in_ms: waitMs }, 'hop processing failed inside the broker; trying again');
      await job.updateData({ ...job.data, faults });
      await job.moveToDelayed(Date.now() + waitMs, token);
      throw new DelayedError();
    }
  };
}
