import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import type { JobStore } from '../store/job-store.js';

export const DEADLINE_QUEUE = 'sy-deadlines';

/**
 * A delayed BullMQ job per job with a deadline, due at that deadline. When it fires, a job that has
 * not finished ends `expired`, wherever it is: waiting on a paused queue, delayed behind a rate
 * limit, or mid-call (whose answer is then dropped).
 */
export class DeadlineQueue {
  private readonly queue: Queue<{ id: string }>;
  private worker: Worker<{ id: string }> | undefined;

  constructor(
    connection: Redis,
    private readonly prefix: string,
  ) {
    this.queue = new Queue(DEADLINE_QUEUE, { connection, prefix });
  }

  async schedule(id: string, deadlineAt: number): Promise<void> {
    await this.queue.add(
      'expire',
      { id },
      { jobId: `${id}-deadline`, delay: Math.max(0, deadlineAt - Date.now()), removeOnComplete: true, removeOnFail: { count: 1000 } },
    );
  }

  /**
   * Runs the expirer in this process (worker processes do), on `connection` (a worker's: BullMQ
   * blocks on it, so it must have no command timeout). `onExpired` cleans up the job's queued hop.
   */
  startExpirer(connection: Redis, store: JobStore, log: Logger, onExpired: (id: string, hop: number) => Promise<void>): void {
    this.worker = new Worker<{ id: string }>(
      DEADLINE_QUEUE,
      async (job) => {
        const outcome = await store.end(job.data.id, 'expired');
        if (outcome.kind !== 'ended') return;
        log.info({ job: job.data.id, hop: outcome.hop, was: outcome.previous }, 'job expired at its deadline');
        await onExpired(job.data.id, outcome.hop);
      },
      { connection, prefix: this.prefix, concurrency: 50 },
    );
    this.worker.on('error', (err) => log.error({ err: err.message }, 'deadline worker error'));
  }

  get bullQueue(): Queue<{ id: string }> {
    return this.queue;
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
  }
}
