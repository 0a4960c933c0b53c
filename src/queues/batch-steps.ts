import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

export const BATCH_QUEUE = 'sy-batches';

export type BatchStep = { step: 'start' | 'cancel' | 'finalize'; batch: string };

/**
 * The queue of batch steps. The API schedules a batch's start and cancel here, and the batch worker
 * runs them and schedules the finalize step. Each step has a deterministic id, so scheduling one
 * twice is a no-op.
 */
export class BatchSteps {
  readonly queue: Queue<BatchStep>;

  constructor(connection: Redis, prefix: string) {
    this.queue = new Queue<BatchStep>(BATCH_QUEUE, { connection, prefix });
  }

  async schedule(step: BatchStep['step'], batch: string): Promise<void> {
    await this.queue.add(step, { step, batch }, { jobId: `${batch}-${step}`, attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: { count: 1000 } });
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
