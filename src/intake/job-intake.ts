import { newJobId } from '../ids.js';
import { type TargetPolicy, TargetRefused } from '../delivery/target-policy.js';
import type { DeadlineQueue } from '../queues/deadline-queue.js';
import type { ProviderQueues } from '../queues/provider-queues.js';
import { RouteError, type Router } from '../routing/router.js';
import { type JobRecord, splitTarget } from '../store/job-record.js';
import { type JobStore, type NewJob, sha256 } from '../store/job-store.js';
import type { JobBody } from './job-request.js';

/** A job the intake refuses; the API turns it into the error shape with this status. */
export class IntakeError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** JSON with sorted keys, so the same body hashes the same whatever order its fields came in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export interface SubmitContext {
  tenant: string;
  idempotencyKey?: string | undefined;
}

/** Accepts a validated job: routes it, writes its record, and puts hop 0 on the first target's queue. */
export class JobIntake {
  constructor(
    private readonly store: JobStore,
    private readonly queues: ProviderQueues,
    private readonly router: Router,
    private readonly deadlines: DeadlineQueue,
    private readonly webhooks: { policy: TargetPolicy; signing: boolean },
  ) {}

  /** A refused webhook is a 400 now, not a delivery that silently never happens. */
  private async checkWebhook(url: string): Promise<void> {
    if (!this.webhooks.signing) {
      throw new IntakeError(400, 'invalid_request_error', 'webhooks are off: the server has no webhooks.secret to sign them with', 'webhook_url', 'webhooks_disabled');
    }
    try {
      await this.webhooks.policy.check(url);
    } catch (err) {
      if (err instanceof TargetRefused) throw new IntakeError(400, 'invalid_request_error', `webhook_url refused: ${err.message}`, 'webhook_url', 'webhook_target_refused');
      throw err;
    }
  }

  async submit(body: JobBody, ctx: SubmitContext): Promise<{ job: JobRecord; replayed: boolean }> {
    if (body.webhook_url !== undefined) await this.checkWebhook(body.webhook_url);
    let chain: string[];
    try {
      chain = this.router.resolve(body);
    } catch (err) {
      if (err instanceof RouteError) throw new IntakeError(400, 'invalid_request_error', err.message, err.param, 'unknown_route');
      throw err;
    }
    const now = Date.now();
    const hop = this.router.firstHop(chain);
    const job: NewJob = {
      id: newJobId(),
      tenant: ctx.tenant,
      task: body.task ?? (body.model === undefined ? 'default' : null),
      model: body.model ?? null,
      priority: body.priority,
      metadata: body.metadata,
      chain,
      hop,
      request: body.request,
      webhook_url: body.webhook_url ?? null,
      deadline_at: body.deadline_s === undefined ? null : now + body.deadline_s * 1000,
      created_at: now,
    };
    const idempotency = ctx.idempotencyKey ? { key: ctx.idempotencyKey, bodyHash: sha256(canonicalJson(body)) } : undefined;
    const outcome = await this.store.create(job, idempotency);
    if (outcome.kind === 'conflict') {
      throw new IntakeError(422, 'idempotency_error', `Idempotency-Key was already used with a different body (job ${outcome.id})`, null, 'idempotency_key_reused');
    }
    if (outcome.kind === 'replayed') {
      const prior = await this.store.get(outcome.id);
      if (!prior) throw new IntakeError(409, 'conflict_error', `the job ${outcome.id} for this Idempotency-Key has expired`, null, 'idempotent_job_expired');
      // The first request may have died between writing the record and enqueueing: finish its work.
      if (prior.status === 'queued') await this.queues.enqueueHop(splitTarget(prior.chain[prior.hop]!).provider, prior.id, prior.hop, prior.priority);
      return { job: prior, replayed: true };
    }
    // The deadline is scheduled before the hop, so a job with a deadline can never outlive it.
    if (job.deadline_at !== null) await this.deadlines.schedule(job.id, job.deadline_at);
    await this.queues.enqueueHop(splitTarget(chain[hop]!).provider, job.id, hop, job.priority);
    return {
      job: { ...job, status: 'queued', attempts: [], webhook_status: null, webhook_attempts: [], started_at: null, finished_at: null, result: null, usage: null, cost_usd: null, error: null },
      replayed: false,
    };
  }
}
