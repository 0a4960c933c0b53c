import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { isIP } from 'node:net';
import { Agent, request } from 'undici';
import type { Config } from '../src/config/schema.js';
import { jobEvent } from '../src/delivery/event.js';
import { signWebhook } from '../src/delivery/signature.js';
import { TargetPolicy, TargetRefused } from '../src/delivery/target-policy.js';
import { type DeliveryData, WEBHOOK_QUEUE } from '../src/delivery/webhook-queue.js';
import type { Logger } from '../src/log.js';
import type { Metrics } from '../src/metrics.js';
import { parseRetryAfter } from '../src/providers/errors.js';
import { isTerminal } from '../src/store/job-record.js';
import type { JobStore } from '../src/store/job-store.js';
import type { BatchStore } from '../src/batches/batch-store.js';
import { TenantSlots } from './tenant-slots.js';

/** Only the status matters; a receiver that answers with more than this has its connection closed. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/** A failed attempt that says when the receiver wants the next one. */
class DeliveryFailed extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** Why an attempt was cut: it reached webhooks.timeout_ms, whatever stage it was at. */
class AttemptDeadline extends Error {
  override name = 'AttemptDeadline';
}

/**
 * Delivers job events to webhooks, Standard Webhooks style: `webhook-id` (the event id, the same on
 * every retry), `webhook-timestamp` and `webhook-signature` fresh on each attempt. Only a 2xx counts;
 * redirects are not followed; 410 stops for good; `Retry-After` sets the next try, else the
 * configured schedule does. Every attempt is written to the job.
 *
 * An attempt has one deadline for all of it (connect, headers, body), so a receiver that trickles
 * bytes cannot hold a slot past `webhooks.timeout_ms`; and no tenant whose receiver is slow has
 * more than `webhooks.max_in_flight_per_tenant` of a sender's slots (see TenantSlots), so one
 * tenant's slow receiver cannot take the slots every other tenant's deliveries need.
 */
export class WebhookSender {
  private worker: Worker<DeliveryData> | undefined;
  private readonly agent: Agent;
  private readonly policy: TargetPolicy;
  private readonly secrets: string[];
  private readonly slots: TenantSlots;

  constructor(
    private readonly deps: {
      /** BullMQ's connection. */
      connection: Redis;
      config: Config;
      store: JobStore;
      /** Where batch events' attempts are kept. */
      batches?: BatchStore;
      log: Logger;
      metrics?: Metrics;
    },
  ) {
    const { webhooks } = deps.config;
    this.policy = new TargetPolicy({ allowPrivate: webhooks.allow_private_targets, allowlist: webhooks.allowlist });
    // Every connection resolves through the policy, so the address checked is the address dialled.
    this.agent = new Agent({ connect: { lookup: this.policy.lookup }, keepAliveTimeout: 10_000 });
    this.secrets = [webhooks.secret, ...webhooks.previous_secrets].filter((s): s is string => Boolean(s));
    this.slots = new TenantSlots(webhooks.max_in_flight_per_tenant);
  }

  start(concurrency = this.deps.config.webhooks.concurrency): void {
    const { config, connection, log } = this.deps;
    const schedule = config.webhooks.retry_schedule_s;
    this.worker = new Worker<DeliveryData>(WEBHOOK_QUEUE, (job, token) => this.deliver(job, token), {
      connection,
      prefix: config.redis.prefix,
      concurrency,
      drainDelay: 1,
      settings: {
        backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) =>
          err instanceof DeliveryFailed && err.retryAfterMs !== undefined ? err.retryAfterMs : (schedule[attemptsMade] ?? schedule.at(-1)!) * 1000,
      },
    });
    this.worker.on('error', (err) => log.error({ err: err.message }, 'webhook worker error'));
  }

  /** Runs one attempt in one of the tenant's slots, or, with none free, hands the delivery back to wait without it counting as an attempt. */
  private async deliver(job: Job<DeliveryData>, token: string | undefined): Promise<void> {
    // Deliveries queued before they named their tenant share one cap.
    const slot = this.slots.take(job.data.tenant ?? '');
    if ('waitMs' in slot) {
      // moveToDelayed skips the attempt count (unlike a thrown error), and frees this worker slot now.
      await job.moveToDelayed(Date.now() + slot.waitMs, token);
      throw new DelayedError();
    }
    try {
      await this.attempt(job);
    } finally {
      slot.release();
    }
  }

  private async attempt(job: Job<DeliveryData>): Promise<void> {
    const { jobId, batchId, eventId, url } = job.data;
    const attempt = job.attemptsMade + 1;
    const last = attempt >= (job.opts.attempts ?? 1);
    let started = Date.now();
    const record = async (status_code: number | null, error: string | undefined, final?: 'delivered' | 'failed') => {
      const outcome = final === 'delivered' ? 'delivered' : final === 'failed' || last ? 'gave_up' : 'retry';
      this.deps.metrics?.webhookDeliveries.inc({ outcome });
      const entry = { attempt, at: started, status_code, latency_ms: Date.now() - started, ...(error && { error }), ...(job.data.redelivery && { redelivery: true }) };
      const state = final ?? (last ? 'failed' : 'pending');
      // Whoever the event is about keeps its attempts: the job, or the batch.
      if (jobId) await this.deps.store.recordWebhookAttempt(jobId, entry, state);
      else if (batchId) await this.deps.batches?.recordWebhookAttempt(batchId, entry, state);
      if (outcome === 'gave_up') this.deps.log.warn({ job: jobId, batch: batchId, event: eventId, attempt, status: status_code, error }, 'webhook delivery given up');
    };

    // A redelivery brings no body: the event is rebuilt from the job's record.
    let body = job.data.body;
    if (body === undefined && jobId) {
      // The event is rebuilt from the record at each attempt: the same bytes every time (see jobEvent).
      const finished = await this.deps.store.get(jobId);
      if (!finished || !isTerminal(finished.status)) {
        const message = `job ${jobId} is gone (its record outlived retention.job_ttl_s), so its event can no longer be built; delivery given up`;
        // Nothing is written to the job: a write would bring back a stub of a record that has expired.
        this.deps.metrics?.webhookDeliveries.inc({ outcome: 'gave_up' });
        this.deps.log.warn({ job: jobId, event: eventId, attempt }, message);
        throw new UnrecoverableError(message);
      }
      body = jobEvent(finished).body;
    }
    if (body === undefined) throw new UnrecoverableError(`delivery ${job.id} carries no event body and names no job`);

    const timeoutMs = this.deps.config.webhooks.timeout_ms;
    const deadline = new AbortController();
    let status: number | undefined;
    let retryAfter: string | string[] | undefined;
    started = Date.now();
    // undici's headersTimeout/bodyTimeout are idle timers, which a byte every few seconds resets
    // for ever; this one covers the whole attempt, and aborting destroys the socket.
    const timer = setTimeout(() => deadline.abort(new AttemptDeadline(`timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      // IP literals never reach the lookup; check them here.
      const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) await this.policy.check(url);
      const timestamp = Math.floor(Date.now() / 1000);
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        signal: deadline.signal,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Switchyard-Webhooks/1',
          'webhook-id': eventId,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(this.secrets, eventId, timestamp, body),
        },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = res.statusCode;
      retryAfter = res.headers['retry-after'];
      // Past the limit undici stops reading and closes the connection; the status is all we need.
      await res.body.dump({ limit: MAX_RESPONSE_BYTES, signal: deadline.signal });
      if (deadline.signal.aborted) throw deadline.signal.reason;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const refused = err instanceof TargetRefused || e.code === 'EREFUSEDTARGET';
      const timedOut = deadline.signal.aborted || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT';
      const message = timedOut ? (status === undefined ? 'timed out' : 'timed out reading the response body') : `${e.code ?? e.name}: ${e.message}`;
      await record(status ?? null, message, refused ? 'failed' : undefined);
      this.deps.log.info({ job: jobId, batch: batchId, event: eventId, attempt, error: message }, 'webhook attempt failed');
      if (refused) throw new UnrecoverableError(message);
      throw new DeliveryFailed(message);
    } finally {
      clearTimeout(timer);
    }
    if (status >= 200 && status < 300) {
      await record(status, undefined, 'delivered');
      this.deps.log.info({ job: jobId, batch: batchId, event: eventId, attempt, status }, 'webhook delivered');
      return;
    }
    const gone = status === 410;
    await record(status, `HTTP ${status}`, gone ? 'failed' : undefined);
    this.deps.log.info({ job: jobId, batch: batchId, event: eventId, attempt, status }, 'webhook attempt failed');
    if (gone) throw new UnrecoverableError('410 Gone: the receiver asked for no more deliveries');
    throw new DeliveryFailed(`HTTP ${status}`, parseRetryAfter(retryAfter));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.agent.close();
  }
}
