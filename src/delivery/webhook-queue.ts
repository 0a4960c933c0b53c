import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { isTerminal } from '../store/job-record.js';
import type { JobStore } from '../store/job-store.js';
import { jobEvent } from './event.js';

export const WEBHOOK_QUEUE = 'sy-webhooks';

/** What a delivery carries: the event exactly as first built, so every retry sends the same bytes. */
export interface DeliveryData {
  /** The job the event is about; its delivery attempts are kept on it. Absent for batch events. */
  jobId?: string;
  eventId: string;
  url: string;
  body: string;
  redelivery?: boolean;
}

/** How long the outbox sweeper waits before taking over an event its own process did not hand on. */
const SWEEP_AFTER_MS = 2000;
const SWEEP_EVERY_MS = 1000;
const SWEEP_BATCH = 500;

/**
 * The webhook queue and its outbox. Ending a job with a webhook writes its id to the outbox in the
 * same Lua step; `dispatch` turns it into a delivery job (deterministic id, so doing it twice is
 * harmless) and clears it. Whatever a crash leaves in the outbox, a sweeper in the worker
 * processes dispatches a moment later.
 */
export class WebhookQueue {
  readonly queue: Queue<DeliveryData>;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    connection: Redis,
    prefix: string,
    private readonly store: JobStore,
    /** Delay before each attempt (s); its length is the number of attempts. */
    private readonly schedule: number[],
    private readonly log: Logger,
  ) {
    this.queue = new Queue(WEBHOOK_QUEUE, { connection, prefix });
  }

  async dispatch(id: string): Promise<void> {
    const job = await this.store.get(id);
    if (job?.webhook_url && isTerminal(job.status)) await this.enqueue(job.id, job.webhook_url, jobEvent(job), `${job.id}-evt`);
    await this.store.clearWebhookOutbox(id);
  }

  /** A fresh delivery of the same event (same webhook-id), on the caller's request. */
  async redeliver(id: string): Promise<boolean> {
    const job = await this.store.get(id);
    if (!job?.webhook_url || !isTerminal(job.status)) return false;
    await this.enqueue(job.id, job.webhook_url, jobEvent(job), `${job.id}-evt-r${Date.now()}`, true);
    return true;
  }

  /** A batch's terminal event (batch.completed, .failed, .cancelled, .expired), once per batch. */
  async batchEvent(batchId: string, status: string, url: string, data: unknown): Promise<void> {
    const id = `evt_${batchId}`;
    const body = JSON.stringify({ id, object: 'event', type: `batch.${status}`, created_at: Math.floor(Date.now() / 1000), data });
    await this.queue.add(
      'deliver',
      { eventId: id, url, body },
      { jobId: `${batchId}-evt`, attempts: this.schedule.length, delay: (this.schedule[0] ?? 0) * 1000, backoff: { type: 'webhook' }, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } },
    );
  }

  /** A job ended owing its event. Fire and forget: a failure here is the sweeper's to repair. */
  onTerminal = (id: string): void => {
    void this.dispatch(id).catch((err: unknown) => this.log.warn({ job: id, err: (err as Error).message }, 'webhook dispatch deferred to the sweeper'));
  };

  startSweeper(): void {
    let sweeping = false;
    this.sweeper = setInterval(() => {
      if (sweeping) return;
      sweeping = true;
      void this.sweep()
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'webhook outbox sweep failed'))
        .finally(() => (sweeping = false));
    }, SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  /** Drains what is overdue in batches, so a backlog left by a crash goes out at the sender's pace. */
  private async sweep(): Promise<void> {
    for (;;) {
      const ids = await this.store.webhookOutbox(SWEEP_AFTER_MS, SWEEP_BATCH);
      await Promise.all(ids.map((id) => this.dispatch(id)));
      if (ids.length < SWEEP_BATCH) return;
    }
  }

  private async enqueue(jobId: string, url: string, event: { id: string; body: string }, deliveryId: string, redelivery = false): Promise<void> {
    await this.queue.add(
      'deliver',
      { jobId, eventId: event.id, url, body: event.body, ...(redelivery && { redelivery }) },
      {
        jobId: deliveryId,
        attempts: this.schedule.length,
        delay: (this.schedule[0] ?? 0) * 1000,
        backoff: { type: 'webhook' },
        // Kept a day after success so a repeated dispatch of the same event stays a no-op.
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 7 * 24 * 3600 },
      },
    );
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.queue.close();
  }
}
