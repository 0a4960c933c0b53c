import { newJobId } from '../ids.js';
import { type TargetPolicy, TargetRefused } from '../delivery/target-policy.js';
import type { Metrics } from '../metrics.js';
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
    /** Seconds, for a Retry-After header. */
    readonly retryAfterS?: number,
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

/** How many bad items a bulk refusal spells out. */
const MAX_LISTED_PROBLEMS = 20;
/** Records written per pipelined round. */
const RECORD_CHUNK = 500;

export interface SubmitContext {
  tenant: string;
  idempotencyKey?: string | undefined;
  /** The batch these jobs are lines of. */
  batch?: string | undefined;
}

/** Accepts a validated job: routes it, writes its record, and puts hop 0 on the first target's queue. */
export class JobIntake {
  constructor(
    private readonly store: JobStore,
    private readonly queues: ProviderQueues,
    private readonly router: Router,
    private readonly deadlines: DeadlineQueue,
    private readonly webhooks: { policy: TargetPolicy; signing: boolean },
    private readonly limits?: { admit(tenant: string, jobs: number): Promise<void> },
    private readonly metrics?: Metrics,
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

  /** Routes and shapes one job without touching Redis; throws the IntakeError a caller should see. */
  private async prepare(body: JobBody, tenant: string, now: number, batch?: string): Promise<NewJob> {
    if (body.webhook_url !== undefined) await this.checkWebhook(body.webhook_url);
    let chain: string[];
    try {
      chain = this.router.resolve(body);
    } catch (err) {
      if (err instanceof RouteError) throw new IntakeError(400, 'invalid_request_error', err.message, err.param, 'unknown_route');
      throw err;
    }
    return {
      id: newJobId(),
      tenant,
      task: body.task ?? (body.model === undefined ? 'default' : null),
      model: body.model ?? null,
      priority: body.priority,
      metadata: body.metadata,
      chain,
      hop: this.router.firstHop(chain),
      request: body.request,
      webhook_url: body.webhook_url ?? null,
      deadline_at: body.deadline_s === undefined ? null : now + body.deadline_s * 1000,
      created_at: now,
      batch,
    };
  }

  /** Writes the record (or finds the job its Idempotency-Key names); says what still has to be enqueued. */
  private async record(job: NewJob, body: JobBody, key: string | undefined): Promise<{ job: JobRecord; replayed: boolean }> {
    const idempotency = key ? { key, bodyHash: sha256(canonicalJson(body)) } : undefined;
    const outcome = await this.store.create(job, idempotency);
    if (outcome.kind === 'conflict') {
      throw new IntakeError(422, 'idempotency_error', `Idempotency-Key was already used with a different body (job ${outcome.id})`, null, 'idempotency_key_reused');
    }
    if (outcome.kind === 'replayed') {
      const prior = await this.store.get(outcome.id);
      if (!prior) throw new IntakeError(409, 'conflict_error', `the job ${outcome.id} for this Idempotency-Key has expired`, null, 'idempotent_job_expired');
      return { job: prior, replayed: true };
    }
    const fresh: JobRecord = { ...job, status: 'queued', attempts: [], webhook_status: null, webhook_attempts: [], started_at: null, finished_at: null, result: null, usage: null, cost_usd: null, error: null };
    return { job: fresh, replayed: false };
  }

  async submit(body: JobBody, ctx: SubmitContext): Promise<{ job: JobRecord; replayed: boolean }> {
    await this.limits?.admit(ctx.tenant, 1);
    const prepared = await this.prepare(body, ctx.tenant, Date.now());
    const outcome = await this.record(prepared, body, ctx.idempotencyKey);
    // A replayed job still queued may have lost its hop between record and enqueue: finish that work.
    if (!outcome.replayed || outcome.job.status === 'queued') await this.enqueue([outcome.job]);
    return outcome;
  }

  /**
   * Many jobs at once: every body is routed before any is written, so one bad item refuses them all
   * (400 naming each bad index); records are written in pipelined chunks and hops added with
   * BullMQ's addBulk. With an Idempotency-Key, item i is keyed `<key>:<i>`, so a retried chunk
   * returns the jobs it created the first time.
   */
  async submitMany(bodies: JobBody[], ctx: SubmitContext): Promise<JobRecord[]> {
    // A batch's own lines were admitted with the batch; callers' bulk requests are checked here.
    if (!ctx.batch) await this.limits?.admit(ctx.tenant, bodies.length);
    const now = Date.now();
    const problems: string[] = [];
    const prepared = await Promise.all(
      bodies.map((b, i) =>
        this.prepare(b, ctx.tenant, now, ctx.batch).catch((err: unknown) => {
          if (!(err instanceof IntakeError)) throw err;
          problems.push(`jobs[${i}]${err.param ? `.${err.param}` : ''}: ${err.message}`);
          return null;
        }),
      ),
    );
    if (problems.length > 0) {
      const shown = problems.slice(0, MAX_LISTED_PROBLEMS).join('; ');
      const more = problems.length > MAX_LISTED_PROBLEMS ? `; and ${problems.length - MAX_LISTED_PROBLEMS} more` : '';
      throw new IntakeError(400, 'invalid_request_error', `${problems.length} of ${bodies.length} jobs are invalid, none was enqueued: ${shown}${more}`, 'jobs', 'invalid_jobs');
    }
    const jobs: JobRecord[] = [];
    const owed: JobRecord[] = [];
    for (let i = 0; i < prepared.length; i += RECORD_CHUNK) {
      const chunk = await Promise.all(
        prepared.slice(i, i + RECORD_CHUNK).map((job, k) => this.record(job!, bodies[i + k]!, ctx.idempotencyKey && `${ctx.idempotencyKey}:${i + k}`)),
      );
      for (const outcome of chunk) {
        jobs.push(outcome.job);
        if (!outcome.replayed || outcome.job.status === 'queued') owed.push(outcome.job);
      }
    }
    await this.enqueue(owed);
    return jobs;
  }

  /** The deadline is scheduled before the hop, so a job with a deadline can never outlive it. */
  private async enqueue(jobs: JobRecord[]): Promise<void> {
    for (const j of jobs) this.metrics?.jobsSubmitted.inc({ task: j.task ?? j.model ?? 'default' });
    await Promise.all(jobs.filter((j) => j.deadline_at !== null).map((j) => this.deadlines.schedule(j.id, j.deadline_at!)));
    await this.queues.enqueueHops(jobs.map((j) => ({ provider: splitTarget(j.chain[j.hop]!).provider, id: j.id, hop: j.hop, priority: j.priority })));
  }
}

