import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { isIP } from 'node:net';
import { Agent, request } from 'undici';
import type { Config } from '../src/config/schema.js';
import { signWebhook } from '../src/delivery/signature.js';
import { TargetPolicy, TargetRefused } from '../src/delivery/target-policy.js';
import { type DeliveryData, WEBHOOK_QUEUE } from '../src/delivery/webhook-queue.js';
import type { Logger } from '../src/log.js';
import type { Metrics } from '../src/metrics.js';
import { parseRetryAfter } from '../src/providers/errors.js';
import type { JobStore } from '../src/store/job-store.js';

/** A failed attempt that says when the receiver wants the next one. */
class DeliveryFailed extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/**
 * Delivers job events to webhooks, Standard Webhooks style: `webhook-id` (the event id, the same on
 * every retry), `webhook-timestamp` and `webhook-signature` fresh on each attempt. Only a 2xx counts;
 * redirects are not followed; 410 stops for good; `Retry-After` sets the next try, else the
 * configured schedule does. Every attempt is written to the job.
 */
export class WebhookSender {
  private worker: Worker<DeliveryData> | undefined;
  private readonly agent: Agent;
  private readonly policy: TargetPolicy;
  private readonly secrets: string[];

  constructor(
    private readonly deps: { connection: Redis; config: Config; store: JobStore; log: Logger; metrics?: Metrics },
  ) {
    const { webhooks } = deps.config;
    this.policy = new TargetPolicy({ allowPrivate: webhooks.allow_private_targets, allowlist: webhooks.allowlist });
    // Every connection resolves through the policy, so the address checked is the address dialled.
    this.agent = new Agent({ connect: { lookup: this.policy.lookup }, keepAliveTimeout: 10_000 });
    this.secrets = [webhooks.secret, ...webhooks.previous_secrets].filter((s): s is string => Boolean(s));
  }

  start(concurrency = 50): void {
    const { config, connection, log } = this.deps;
    const schedule = config.webhooks.retry_schedule_s;
    this.worker = new Worker<DeliveryData>(WEBHOOK_QUEUE, (job) => this.deliver(job), {
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

  private async deliver(job: Job<DeliveryData>): Promise<void> {
    const { jobId, eventId, url, body } = job.data;
    const attempt = job.attemptsMade + 1;
    const last = attempt >= (job.opts.attempts ?? 1);
    const started = Date.now();
    const record = async (status_code: number | null, error: string | undefined, final?: 'delivered' | 'failed') => {
      const outcome = final === 'delivered' ? 'delivered' : final === 'failed' || last ? 'gave_up' : 'retry';
      this.deps.metrics?.webhookDeliveries.inc({ outcome });
      // Batch events have no job to keep their attempts on; the log and the metrics have them.
      if (!jobId) return;
      await this.deps.store.recordWebhookAttempt(
        jobId,
        { attempt, at: started, status_code, latency_ms: Date.now() - started, ...(error && { error }), ...(job.data.redelivery && { redelivery: true }) },
        final ?? (last ? 'failed' : 'pending'),
      );
    };

    let status: number;
    let retryAfter: string | string[] | undefined;
    try {
      // IP literals never reach the lookup; check them here.
      const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) await this.policy.check(url);
      const timestamp = Math.floor(Date.now() / 1000);
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Switchyard-Webhooks/1',
          'webhook-id': eventId,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(this.secrets, eventId, timestamp, body),
        },
        body,
        headersTimeout: this.deps.config.webhooks.timeout_ms,
        bodyTimeout: this.deps.config.webhooks.timeout_ms,
      });
      await res.body.dump();
      status = res.statusCode;
      retryAfter = res.headers['retry-after'];
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const refused = err instanceof TargetRefused || e.code === 'EREFUSEDTARGET';
      const message = e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' ? 'timed out' : `${e.code ?? e.name}: ${e.message}`;
      await record(null, message, refused ? 'failed' : undefined);
      this.deps.log.info({ job: jobId, event: eventId, attempt, error: message }, 'webhook attempt failed');
      if (refused) throw new UnrecoverableError(message);
      throw new DeliveryFailed(message);
    }
    if (status >= 200 && status < 300) {
      await record(status, undefined, 'delivered');
      this.deps.log.info({ job: jobId, event: eventId, attempt, status }, 'webhook delivered');
      return;
    }
    const gone = status === 410;
    await record(status, `HTTP ${status}`, gone ? 'failed' : undefined);
    this.deps.log.info({ job: jobId, event: eventId, attempt, status }, 'webhook attempt failed');
    if (gone) throw new UnrecoverableError('410 Gone: the receiver asked for no more deliveries');
    throw new DeliveryFailed(`HTTP ${status}`, parseRetryAfter(retryAfter));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.agent.close();
  }
}
