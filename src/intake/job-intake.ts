import { type TargetPolicy, TargetRefused } from '../delivery/target-policy.js';
import type { Metrics } from '../metrics.js';
import type { DeadlineQueue } from '../queues/deadline-queue.js';
import type { HopCommand } from '../queues/hop-command.js';
import type { ProviderQueues } from '../queues/provider-queues.js';
import { type Route, RouteError, type Router } from '../routing/router.js';
import { type JobRecord, splitTarget } from '../store/job-record.js';
import { type EndOutcome, type Idempotency, type JobStore, type NewJob, sha256 } from '../store/job-store.js';
import { IntakeError } from './intake-error.js';
import type { JobBody } from './job-request.js';
import type { TenantLimits } from './tenant-limits.js';

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
/** Records written per script call (one chunk: a few ms of Redis time). */
const RECORDS_PER_CALL = 100;

export interface SubmitContext {
  tenant: string;
  idempotencyKey?: string | undefined;
  /** The batch these jobs are lines of; they were admitted with the batch, under its lease. */
  batch?: string | undefined;
}

export interface JobIntakeDeps {
  store: JobStore;
  queues: ProviderQueues;
  router: Router;
  deadlines: DeadlineQueue;
  webhooks: { policy: TargetPolicy; signing: boolean };
  limits: TenantLimits;
  /** The most one job's request may weigh, serialised (server.body_limit_bytes), however it arrives. */
  maxJobBytes: number;
  metrics?: Metrics;
}

/*
 * An Idempotency-Key is scoped by what it was sent with, so a single job's key `K:0` and item 0
 * of a bulk request keyed `K` can never name each other's job (a NUL cannot occur in a header).
 */
const jobScope = (key: string) => `job\u0000${key}`;
const bulkScope = (key: string, index: number) => `bulk\u0000${key}\u0000${index}`;

/** A refusal of one item of a bulk request. */
interface Problem {
  index: number;
  error: IntakeError;
}

/** Accepts a validated job: routes it, admits it against its tenant's limits, writes its record, and puts hop 0 on the first target's queue. */
export class JobIntake {
  constructor(private readonly deps: JobIntakeDeps) {}

  /** A refused webhook is a 400 now, not a delivery that silently never happens. */
  private async checkWebhook(url: string): Promise<void> {
    if (!this.deps.webhooks.signing) {
      throw new IntakeError(400, 'invalid_request_error', 'webhooks are off: the server has no webhooks.secret to sign them with', 'webhook_url', 'webhooks_disabled');
    }
    try {
      await this.deps.webhooks.policy.check(url);
    } catch (err) {
      if (err instanceof TargetRefused) throw new IntakeError(400, 'invalid_request_error', `webhook_url refused: ${err.message}`, 'webhook_url', 'webhook_target_refused');
      throw err;
    }
  }

  /** Routes and shapes one job without touching Redis; throws the IntakeError a caller should see. */
  private async prepare(body: JobBody, tenant: string, now: number, batch?: string): Promise<NewJob> {
    if (body.webhook_url !== undefined) await this.checkWebhook(body.webhook_url);
    const route = await this.route(body, tenant, batch !== undefined);
    const chain = route.chain;
    // Serialised once: measured here, stored as is.
    const requestJson = JSON.stringify(body.request);
    if (requestJson.length > this.deps.maxJobBytes || (requestJson.length * 3 > this.deps.maxJobBytes && Buffer.byteLength(requestJson) > this.deps.maxJobBytes)) {
      throw new IntakeError(413, 'request_too_large', `the request is ${Buffer.byteLength(requestJson)} bytes; one job may be at most ${this.deps.maxJobBytes} (server.body_limit_bytes)`, 'request', 'job_too_large');
    }
    return {
      id: this.deps.store.keys.newJobId(tenant),
      tenant,
      task: body.task ?? (body.model === undefined ? 'default' : null),
      model: body.model ?? null,
      priority: body.priority,
      metadata: body.metadata,
      chain,
      hop: 0,
      routing: route.routing,
      budgetAlias: route.budgetAlias,
      lease: route.lease,
      affinity: route.affinity,
      request: body.request,
      requestJson,
      webhook_url: body.webhook_url ?? null,
      deadline_at: body.deadline_s === undefined ? null : now + body.deadline_s * 1000,
      created_at: now,
      batch,
      estimate_e10: this.deps.limits.estimate(tenant, chain, body.request, route.routing.input_tokens),
    };
  }

  private async route(body: JobBody, tenant: string, admitted: boolean): Promise<Route> {
    try {
      return await this.deps.router.route(body, tenant, { admitted });
    } catch (err) {
      throw routeRefusal(err);
    }
  }

  /**
   * Writes the records (or finds the jobs their Idempotency-Keys name), all of one tenant; says
   * which were replayed. With `hop` (a single job), a created job's first hop is added by the same
   * script. `created` hears of every job written, before a refusal is thrown, so a caller can take
   * them back.
   */
  private async record(jobs: NewJob[], idempotency: (Idempotency | undefined)[], lease: string | null, hop?: HopCommand, created?: (id: string, i: number) => void): Promise<{ job: JobRecord; replayed: boolean }[]> {
    const outcomes = await this.deps.store.createMany(jobs, idempotency, lease ?? undefined, hop);
    outcomes.forEach((o, i) => o.kind === 'created' && created?.(o.id, i));
    const conflict = outcomes.find((o) => o.kind === 'conflict');
    if (conflict) {
      throw new IntakeError(422, 'idempotency_error', `Idempotency-Key was already used with a different body (job ${conflict.id})`, null, 'idempotency_key_reused');
    }
    const replayed = outcomes.flatMap((o) => (o.kind === 'replayed' ? [o.id] : []));
    const prior = new Map((await this.deps.store.getMany(replayed)).flatMap((j) => (j ? [[j.id, j] as const] : [])));
    return outcomes.map((o, i) => {
      if (o.kind === 'replayed') {
        const job = prior.get(o.id);
        if (!job) throw new IntakeError(409, 'conflict_error', `the job ${o.id} for this Idempotency-Key has expired`, null, 'idempotent_job_expired');
        return { job, replayed: true };
      }
      return { job: queuedRecord(jobs[i]!), replayed: false };
    });
  }

  async submit(body: JobBody, ctx: SubmitContext): Promise<{ job: JobRecord; replayed: boolean }> {
    const prepared = await this.prepare(body, ctx.tenant, Date.now());
    const lease = await this.deps.limits.admit(ctx.tenant, { jobs: 1, estimateE10: prepared.estimate_e10 ?? 0 });
    const { queues } = this.deps;
    let outcome: { job: JobRecord; replayed: boolean };
    try {
      const idempotency = ctx.idempotencyKey ? { scope: jobScope(ctx.idempotencyKey), bodyHash: sha256(canonicalJson(body)) } : undefined;
      let hop: HopCommand | undefined;
      if (queues.addedWithRecords) {
        // The deadline still comes first: a job that exists has its deadline. (A replay's id is
        // never written, and its deadline finds no job.)
        if (prepared.deadline_at !== null) await this.deps.deadlines.schedule(prepared.id, prepared.deadline_at);
        hop = await queues.hopCommand(splitTarget(prepared.chain[prepared.hop]!).provider, prepared.id, prepared.hop, prepared.priority);
      }
      [outcome] = (await this.record([prepared], [idempotency], lease, hop)) as [{ job: JobRecord; replayed: boolean }];
    } catch (err) {
      if (lease) await this.deps.limits.release(ctx.tenant, lease);
      throw err;
    }
    // A created job used up its lease; a replay did not, so give its room back.
    if (lease && outcome.replayed) await this.deps.limits.release(ctx.tenant, lease);
    if (!outcome.replayed && queues.addedWithRecords) this.submitted([outcome.job]);
    // Otherwise its hop is still owed: a job created apart from its hop (sharded), or a replayed
    // one still queued, which may have lost its hop between record and enqueue.
    else if (!outcome.replayed || outcome.job.status === 'queued') await this.enqueue([outcome.job]);
    return outcome;
  }

  /**
   * Many jobs at once, all or nothing: every body is routed and measured, and every Idempotency-Key
   * checked, before any is written, so one bad item refuses them all (naming each bad index) and
   * nothing is left behind. The whole request is admitted against the tenant's limits in one step.
   * Records are written a chunk to a script, and hops added (addHops) once every record is
   * written. With an Idempotency-Key, item i is keyed by the key and i, so a retried chunk returns
   * the jobs it created the first time.
   */
  async submitMany(bodies: JobBody[], ctx: SubmitContext): Promise<JobRecord[]> {
    const now = Date.now();
    const problems: Problem[] = [];
    const prepared = await Promise.all(
      bodies.map((b, index) =>
        this.prepare(b, ctx.tenant, now, ctx.batch).catch((err: unknown) => {
          if (!(err instanceof IntakeError)) throw err;
          problems.push({ index, error: err });
          return null;
        }),
      ),
    );
    if (problems.length > 0) throw refusal(problems, bodies.length);
    const keys = ctx.idempotencyKey ? bodies.map((b, i) => ({ scope: bulkScope(ctx.idempotencyKey!, i), bodyHash: sha256(canonicalJson(b)) })) : undefined;
    if (keys) {
      const reused = await this.deps.store.idempotencyConflicts(ctx.tenant, keys);
      if (reused.length > 0) throw reuseRefusal(reused, bodies.length);
    }
    const jobs = prepared as NewJob[];
    const lease = ctx.batch ?? (await this.deps.limits.admit(ctx.tenant, { jobs: jobs.length, estimateE10: jobs.reduce((n, j) => n + (j.estimate_e10 ?? 0), 0) }));
    const written: JobRecord[] = [];
    const created: { id: string; tenant: string; idempotency: Idempotency | undefined }[] = [];
    const owed: JobRecord[] = [];
    try {
      // Every chunk's script is sent at once: Redis runs them back to back while this process
      // builds the next, and a chunk is a few ms of Redis time, so other clients wait no longer.
      const calls = await Promise.allSettled(
        Array.from({ length: Math.ceil(jobs.length / RECORDS_PER_CALL) }, (_, c) => {
          const from = c * RECORDS_PER_CALL;
          const chunk = jobs.slice(from, from + RECORDS_PER_CALL);
          return this.record(chunk, chunk.map((_, k) => keys?.[from + k]), lease, undefined, (id, k) => created.push({ id, tenant: ctx.tenant, idempotency: keys?.[from + k] }));
        }),
      );
      const failed = calls.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed) throw failed.reason;
      for (const call of calls as PromiseFulfilledResult<{ job: JobRecord; replayed: boolean }[]>[]) {
        for (const outcome of call.value) {
          written.push(outcome.job);
          if (!outcome.replayed || outcome.job.status === 'queued') owed.push(outcome.job);
        }
      }
    } catch (err) {
      // Another request took one of the keys between the check and the write, or Redis failed:
      // what this request wrote was never enqueued, so it is taken back whole.
      await this.deps.store.discard(created);
      if (lease && !ctx.batch) await this.deps.limits.release(ctx.tenant, lease);
      throw err;
    }
    if (lease && !ctx.batch && created.length < jobs.length) await this.deps.limits.release(ctx.tenant, lease);
    await this.enqueue(owed);
    return written;
  }

  /** Admits a batch of `lines` jobs at its creation, under a lease named by the batch that lasts `leaseMs`. */
  async admitBatch(tenant: string, batch: string, lines: number, leaseMs: number): Promise<void> {
    await this.deps.limits.admit(tenant, { jobs: lines, estimateE10: 0, lease: batch, leaseMs });
  }

  /** Once a batch's lines are read: holds their estimated spend against the tenant's budget, or throws the 402. */
  async holdBatchSpend(tenant: string, batch: string, estimateE10: number, leaseMs: number): Promise<void> {
    if (estimateE10 > 0) await this.deps.limits.admit(tenant, { jobs: 0, estimateE10, lease: batch, leaseMs, countRequest: false });
  }

  /**
   * Cancels a job that has not finished (with `onlyQueued`, only one that has not started) and
   * takes its waiting hop off its queue, so no worker claims it for nothing.
   */
  async cancel(id: string, opts: { onlyQueued?: boolean; message?: string } = {}): Promise<EndOutcome> {
    const outcome = await this.deps.store.end(id, 'cancelled', Date.now(), opts.message, opts.onlyQueued);
    if (outcome.kind === 'ended' && outcome.previous === 'queued') {
      const ref = (await this.deps.store.get(id))?.chain[outcome.hop];
      if (ref) await this.deps.queues.removeHop(splitTarget(ref).provider, id, outcome.hop);
    }
    return outcome;
  }

  /** Gives back what a batch's lease still holds (it failed, was cancelled, or has made all its jobs). */
  async releaseBatch(tenant: string, batch: string): Promise<void> {
    await this.deps.limits.release(tenant, batch);
  }

  /**
   * A batch line's estimated spend for its tenant's budget (0 when the tenant has none), after
   * every check routing would refuse it by, so a line that cannot run fails the batch's validation.
   */
  estimate(tenant: string, body: JobBody): number {
    let targets: string[];
    try {
      targets = this.deps.router.resolve(body, tenant);
    } catch (err) {
      throw routeRefusal(err);
    }
    return this.deps.limits.estimate(tenant, targets, body.request);
  }

  private submitted(jobs: JobRecord[]): void {
    for (const j of jobs) this.deps.metrics?.jobsSubmitted.inc({ task: j.task ?? j.model ?? 'default' });
  }

  /** The deadline is scheduled before the hop, so a job with a deadline can never outlive it. */
  private async enqueue(jobs: JobRecord[]): Promise<void> {
    this.submitted(jobs);
    await Promise.all(jobs.filter((j) => j.deadline_at !== null).map((j) => this.deps.deadlines.schedule(j.id, j.deadline_at!)));
    await this.deps.queues.enqueueHops(jobs.map((j) => ({ provider: splitTarget(j.chain[j.hop]!).provider, id: j.id, hop: j.hop, priority: j.priority })));
  }
}

/**
 * The record of a job just created, as a read would give it. Written out field by field: an object
 * spread followed by a dozen new keys costs V8 about 18 µs, a bulk request's largest single cost.
 */
function queuedRecord(job: NewJob): JobRecord {
  return {
    id: job.id, tenant: job.tenant, status: 'queued', task: job.task, model: job.model, priority: job.priority, metadata: job.metadata,
    created_at: job.created_at, started_at: null, finished_at: null, deadline_at: job.deadline_at, chain: job.chain, hop: job.hop,
    routing: job.routing ?? null, attempts: [], result: null, usage: null, cost_usd: null, error: null,
    webhook_url: job.webhook_url, webhook_status: null, reopened: 0, webhook_attempts: [],
  };
}

/** A job the router could not place, as the 4xx its caller sees. */
function routeRefusal(err: unknown): unknown {
  return err instanceof RouteError ? new IntakeError(err.status, err.type, err.message, err.param, err.code) : err;
}

const listed = (parts: string[]) => {
  const shown = parts.slice(0, MAX_LISTED_PROBLEMS).join('; ');
  return parts.length > MAX_LISTED_PROBLEMS ? `${shown}; and ${parts.length - MAX_LISTED_PROBLEMS} more` : shown;
};

/** One answer for every bad item: 413 when each of them is too large, 402 when each names a spent budget, else 400. */
function refusal(problems: Problem[], total: number): IntakeError {
  problems.sort((a, b) => a.index - b.index);
  const parts = problems.map(({ index, error }) => `jobs[${index}]${error.param ? `.${error.param}` : ''}: ${error.message}`);
  if (problems.every((p) => p.error.status === 402)) {
    return new IntakeError(402, 'budget_exceeded_error', `${problems.length} of ${total} jobs are over a budget, none was enqueued: ${listed(parts)}`, 'jobs', problems[0]!.error.code);
  }
  const tooLarge = problems.every((p) => p.error.status === 413);
  const message = `${problems.length} of ${total} jobs are ${tooLarge ? 'too large' : 'invalid'}, none was enqueued: ${listed(parts)}`;
  return tooLarge ? new IntakeError(413, 'request_too_large', message, 'jobs', 'job_too_large') : new IntakeError(400, 'invalid_request_error', message, 'jobs', 'invalid_jobs');
}

function reuseRefusal(indexes: number[], total: number): IntakeError {
  const parts = indexes.map((i) => `jobs[${i}]`);
  return new IntakeError(422, 'idempotency_error', `${indexes.length} of ${total} jobs reuse this Idempotency-Key with a different body, none was enqueued: ${listed(parts)}`, null, 'idempotency_key_reused');
}
