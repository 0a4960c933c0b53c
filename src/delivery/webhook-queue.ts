import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import { isTerminal, type JobRecord } from '../store/job-record.js';
import type { JobStore } from '../store/job-store.js';
import { jobEvent, jobEventId } from './event.js';

export const WEBHOOK_QUEUE = 'sy-webhooks';

/**
 * What a delivery carries. An event's first delivery carries its body, built once when the job
 * ended; a redelivery carries none: the sender rebuilds it from the job record (`jobEvent` is a pure
 * function of the finished record), so it sends the same bytes, and asking for redeliveries costs
 * a few ids each, never another copy of the result.
 */
export interface DeliveryData {
  /** The job the event is about; its delivery attempts are kept on it. Absent for batch events. */
  jobId?: string;
  /** The batch a batch event is about; its delivery attempts are kept on it. */
  batchId?: string;
  /** Whose in-flight cap the delivery counts against. */
  tenant: string;
  eventId: string;
  url: string;
  /** The event, on a first delivery and a batch's; absent on a redelivery, which rebuilds it. */
  body?: string;
  redelivery?: boolean;
}

export type RedeliveryOutcome =
  | { kind: 'queued' }
  /** A redelivery of this job's event has not finished yet. */
  | { kind: 'pending' }
  | { kind: 'limited'; scope: 'job' | 'tenant'; limit: number; retryAfterS: number };

/** How long the outbox sweeper waits before taking over an event its own process did not hand on. */
const SWEEP_AFTER_MS = 2000;
const SWEEP_EVERY_MS = 1000;
const SWEEP_BATCH = 500;
const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;
/** Far longer than checking for a pending redelivery and adding one takes; only a crash leaves it to expire. */
const REDELIVER_LOCK_MS = 5000;

/**
 * The webhook queue and its outbox. Ending a job with a webhook writes its id to the outbox in the
 * same Lua step; `dispatch` turns it into a delivery job (deterministic id, so doing it twice is
 * harmless) and clears it. Whatever a crash leaves in the outbox, a sweeper in the worker
 * processes dispatches a moment later.
 */
export class WebhookQueue {
  readonly queue: Queue<DeliveryData>;
  private readonly redis: ScriptClient;
  private readonly store: JobStore;
  private readonly config: Config['webhooks'];
  private readonly log: Logger;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(deps: {
    /** BullMQ's connection. */
    connection: Redis;
    /** For Switchyard's own scripts (the redelivery windows). */
    redis: Redis;
    prefix: string;
    store: JobStore;
    config: Config['webhooks'];
    log: Logger;
  }) {
    this.queue = new Queue(WEBHOOK_QUEUE, { connection: deps.connection, prefix: deps.prefix });
    this.redis = withScripts(deps.redis);
    this.store = deps.store;
    this.config = deps.config;
    this.log = deps.log;
  }

  async dispatch(id: string): Promise<void> {
    const job = await this.store.get(id);
    if (job?.webhook_url && isTerminal(job.status)) {
      // Kept a day after success so a repeated dispatch of the same event stays a no-op. The event's
      // one delivery carries its body (the record was just read for it); redeliveries do not.
      const delivery = `${job.id}-evt${job.reopened > 0 ? `-r${job.reopened}` : ''}`;
      await this.enqueue(job, delivery, { removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } }, false, jobEvent(job).body);
    }
    await this.store.clearWebhookOutbox(id);
  }

  /**
   * A fresh delivery of the same event (same webhook-id) on the caller's request: at most one
   * pending per job, and only as many as the per-job and per-tenant windows allow.
   */
  async redeliver(job: JobRecord): Promise<RedeliveryOutcome> {
    if (!job.webhook_url || !isTerminal(job.status)) throw new Error(`job ${job.id} owes no webhook event`);
    const lock = this.store.keys.webhookRedeliverLock(job.id);
    // Another request for the same job is between its check and its add right now: it is the pending one.
    if ((await this.redis.set(lock, '1', 'PX', REDELIVER_LOCK_MS, 'NX')) !== 'OK') return { kind: 'pending' };
    try {
      const deliveryId = `${job.id}-evt-redeliver`;
      // Redeliveries are removed as soon as they finish, so the id is free exactly when none is pending.
      if (await this.queue.getJob(deliveryId)) return { kind: 'pending' };
      const limited = await this.spend(job);
      if (limited) return limited;
      await this.enqueue(job, deliveryId, { removeOnComplete: true, removeOnFail: true }, true);
      return { kind: 'queued' };
    } finally {
      await this.redis.del(lock);
    }
  }

  /** Takes one redelivery from the job's hourly and the tenant's per-minute window, or says which is spent. */
  private async spend(job: JobRecord): Promise<RedeliveryOutcome | undefined> {
    const windows = [
      { scope: 'job' as const, key: this.store.keys.budget(`redeliver:job:${job.id}`), limit: this.config.redeliveries_per_job_per_hour, ms: HOUR_MS },
      { scope: 'tenant' as const, key: this.store.keys.budget(`redeliver:tenant:${job.tenant}`), limit: this.config.redeliveries_per_tenant_per_minute, ms: MINUTE_MS },
    ];
    const taken: string[] = [];
    for (const w of windows) {
      const [ok, waitMs] = (await this.redis.windowBudget(w.key, 1, w.limit, w.ms, 'reserve')) as [number, number, number];
      if (ok !== 1) {
        // A request refused by one window must not use up the other.
        await Promise.all(taken.map((key) => this.redis.windowBudget(key, -1, 0, MINUTE_MS, 'adjust')));
        return { kind: 'limited', scope: w.scope, limit: w.limit, retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)) };
      }
      taken.push(w.key);
    }
    return undefined;
  }

  /** A batch's terminal event (batch.completed, .failed, .cancelled, .expired), once per batch. */
  async batchEvent(tenant: string, batchId: string, status: string, url: string, data: unknown): Promise<void> {
    const id = `evt_${batchId}`;
    const body = JSON.stringify({ id, object: 'event', type: `batch.${status}`, created_at: Math.floor(Date.now() / 1000), data });
    await this.queue.add('deliver', { tenant, batchId, eventId: id, url, body }, { jobId: `${batchId}-evt`, ...this.attemptOptions(), removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } });
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

  private attemptOptions(): JobsOptions {
    const schedule = this.config.retry_schedule_s;
    return { attempts: schedule.length, delay: (schedule[0] ?? 0) * 1000, backoff: { type: 'webhook' } };
  }

  private async enqueue(job: JobRecord, deliveryId: string, retention: JobsOptions, redelivery = false, body?: string): Promise<void> {
    await this.queue.add(
      'deliver',
      { jobId: job.id, tenant: job.tenant, eventId: jobEventId(job.id, job.reopened), url: job.webhook_url!, ...(body !== undefined && { body }), ...(redelivery && { redelivery }) },
      { jobId: deliveryId, ...this.attemptOptions(), ...retention },
    );
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.queue.close();
  }
}
