import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Attempt, type JobError, type JobRecord, type JobStatus, parseRecord, RECORD_FIELDS, type RoutingRecord, routingFields, type Usage, type WebhookAttempt } from './job-record.js';
import { Keys } from './keys.js';
import type { HopCommand } from '../queues/hop-command.js';
import { batch } from '../redis/batch.js';
import { type FetchClaim, type FinishRiders, type ScriptClient, type Uncarried, withScripts } from '../redis/scripts.js';

export interface NewJob {
  id: string;
  tenant: string;
  task: string | null;
  model: string | null;
  priority: number;
  metadata: Record<string, string>;
  chain: string[];
  /** The first hop to run: the chain position of the first target worth trying. */
  hop: number;
  request: unknown;
  webhook_url: string | null;
  deadline_at: number | null;
  created_at: number;
  /** The batch this job is a line of, if any. */
  batch?: string | undefined;
  /** `request` already serialised, when the intake had to measure it anyway. */
  requestJson?: string;
  /** Spend reserved for this job against its tenant's monthly budget (1e-10 USD); 0 or absent for none. */
  estimate_e10?: number;
  routing?: RoutingRecord | undefined;
  /** The alias whose monthly budget this job's spend counts against. */
  budgetAlias?: string | undefined;
  /** The least-busy lease zset of its first target (a `least_busy` alias's job). */
  lease?: string | undefined;
  /** "<affinity key> <ttl s>": where a success records the target that served this prompt prefix. */
  affinity?: string | undefined;
}

/**
 * A job's small arguments as one JSON array of strings, decoded by the script (cjson): ioredis spends
 * about a microsecond on each argument of a command (more once one is a Buffer, as a hop's BullMQ
 * arguments are), so a job's twenty-odd become one. Strings only, so no number is reformatted in
 * Lua; well-formed, since Lua's cjson refuses the escape JSON.stringify writes for a lone surrogate
 * (which ioredis sent as U+FFFD before).
 */
function packStrings(values: (string | number)[]): string {
  return JSON.stringify(values.map((v) => (typeof v === 'string' ? v.toWellFormed() : String(v))));
}

/**
 * A new job's hash: fields at their default (no task, no model, no metadata, an empty ledger) are
 * left out, since each costs a queued job memory and parseRecord reads their absence as the default.
 */
function recordFields(job: NewJob): (string | number)[] {
  const fields: (string | number)[] = [
    'id', job.id, 'tenant', job.tenant, 'status', 'queued', 'priority', job.priority, 'created_at', job.created_at,
    'chain', JSON.stringify(job.chain), 'hop', job.hop,
  ];
  if (job.task) fields.push('task', job.task);
  if (job.model) fields.push('model', job.model);
  if (Object.keys(job.metadata).length > 0) fields.push('metadata', JSON.stringify(job.metadata));
  if (job.webhook_url) fields.push('webhook_url', job.webhook_url);
  if (job.deadline_at !== null) fields.push('deadline_at', job.deadline_at);
  if (job.batch) fields.push('batch', job.batch);
  if (job.routing) fields.push(...routingFields(job.routing, job.chain));
  if (job.routing?.alias) fields.push('alias', job.routing.alias);
  if (job.budgetAlias) fields.push('budget_alias', job.budgetAlias);
  if (job.affinity) fields.push('affinity', job.affinity);
  if (job.lease) fields.push('lease', job.lease);
  return fields;
}

/** How long a queued job's least-busy lease lasts (QUEUED_LEASE_MS in src/lua/includes/inflight.lua). */
const QUEUED_LEASE_MS = 3_600_000;

/** What makes an Idempotency-Key unique: its scope (a single job, or item i of a bulk request) and the body it came with. */
export interface Idempotency {
  scope: string;
  bodyHash: string;
}

export type CreateOutcome =
  | { kind: 'created'; id: string }
  | { kind: 'replayed'; id: string }
  | { kind: 'conflict'; id: string };

export type StartOutcome =
  | { kind: 'missing' }
  | { kind: 'terminal'; status: JobStatus }
  | { kind: 'moved'; hop: number }
  | { kind: 'expired' }
  | { kind: 'ok'; request: Record<string, unknown>; chain: string[]; rerun: boolean; deadlineAt: number | null; createdAt: number; tenant: string; alias: string | null };

/** Why a failed job may not be re-opened: gone, not failed, a batch's line, failed at another hop, past its deadline, its request not kept. */
export type ReopenRefusal = 'missing' | 'status' | 'batch' | 'hop' | 'deadline' | 'request';

/** Lines for a hop's BullMQ job log (Bull Board shows them), written by the script that did what they tell. */
export interface HopLog {
  /** The BullMQ job's own key (`<prefix>:<queue>:<job id>`); its log is `<key>:logs`. */
  bullKey: string;
  lines: string[];
}

export type Settlement =
  | { status: 'succeeded'; result: unknown; usage: Usage | null; cost_usd: number | null }
  | { status: 'failed'; error: JobError }
  /** Moves the job to the next hop. */
  | { status: 'queued' }
  /** Puts the job back to wait for the same hop. */
  | { status: 'retry' };

/** How a settle went: applied, or not because the job had moved on to a later hop, or had ended meanwhile. */
export type Settled = 'applied' | 'moved' | 'ended';

export type EndOutcome =
  | { kind: 'missing' }
  | { kind: 'terminal'; status: JobStatus }
  | { kind: 'started'; status: JobStatus }
  | { kind: 'ended'; hop: number; previous: JobStatus };

export interface ListOptions {
  status?: JobStatus;
  limit: number;
  after?: string;
}

const IDEMPOTENCY_WINDOW_S = 24 * 3600;
/** Jobs one filtered list page may pass over (a status each), so a rare status cannot make a page scan everything. */
const LIST_SCAN_LIMIT = 2000;

/** The calendar month (UTC) a spend counts against: `2026-11`. Cached: every settle asks. */
let month = { label: '', from: 0, until: 0 };
export function monthOf(ms: number): string {
  if (ms < month.from || ms >= month.until) {
    const d = new Date(ms);
    month = { label: d.toISOString().slice(0, 7), from: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), until: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
  }
  return month.label;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The job record: our own Redis hash, the source of truth for status, ledger, result and usage. */
export class JobStore {
  readonly keys: Keys;
  private readonly redis: ScriptClient;
  /**
   * Told, whoever ended the job, when its end owes a webhook event: the event is already in the
   * outbox (same Lua step); this only hands it on without waiting for the sweeper.
   */
  webhookOwed: ((id: string) => void) | undefined;

  constructor(
    redis: Redis,
    prefix: string,
    private readonly ttlMs: number,
    shards = 0,
  ) {
    this.redis = withScripts(redis);
    this.keys = new Keys(prefix, shards);
  }

  /**
   * A hop's log lines go in the record's own script while they share its slot. Sharded, the
   * BullMQ job lives in its queue's slot, so they are written just after, by a script of their own.
   */
  private hopLogInScript(log: HopLog | undefined): HopLog | undefined {
    return this.keys.shards === 0 ? log : undefined;
  }

  private async hopLogApart(log: HopLog | undefined): Promise<void> {
    if (this.keys.shards === 0 || !log?.bullKey || log.lines.length === 0) return;
    await this.redis.appendHopLog(log.bullKey, log.lines.join('\n'));
  }

  /** `lease` names the admission lease this job was admitted under (see TenantLimits). */
  async create(job: NewJob, idempotency?: Idempotency, lease?: string): Promise<CreateOutcome> {
    return (await this.createMany([job], [idempotency], lease))[0]!;
  }

  /**
   * Many jobs of one tenant, in one script (a bulk request's chunk): each is created, or found
   * under its Idempotency-Key, as `create` would. With `hop` (ProviderQueues.hopCommand; a single
   * job only), a created job's first hop is added in the same script.
   */
  async createMany(jobs: NewJob[], idempotency: (Idempotency | undefined)[], lease?: string, hop?: HopCommand): Promise<CreateOutcome[]> {
    const tenant = jobs[0]!.tenant;
    const at = jobs[0]!.created_at;
    const keys = [this.keys.jobIndex(tenant), this.keys.tenant(tenant), this.keys.tenantLeases(tenant), this.keys.tenantLeaseSizes(tenant)];
    // BullMQ's keys go after the tenant's, its arguments before the jobs'.
    const args: (string | number | Buffer)[] = [at, this.ttlMs, IDEMPOTENCY_WINDOW_S, lease ?? '', monthOf(at), ...(hop?.args ?? ['', '', ''])];
    jobs.forEach((job, i) => {
      if (job.tenant !== tenant) throw new Error('createMany takes the jobs of one tenant');
      const key = idempotency[i];
      const head = [this.keys.job(job.id), this.idempotencyKey(tenant, key), job.id, key ? '1' : '0', key?.bodyHash ?? '', job.estimate_e10 ?? 0, job.lease ?? '', job.created_at + QUEUED_LEASE_MS];
      args.push(packStrings([...head, ...recordFields(job)]), job.requestJson ?? JSON.stringify(job.request));
    });
    const reply = (await (hop ? this.redis.createQueuedJob(...keys, ...hop.keys, ...args) : this.redis.createJobs(...keys, ...args))) as (number | string)[];
    return jobs.map((_, i) => {
      const code = reply[2 * i];
      return { kind: code === 0 ? 'created' : code === 1 ? 'replayed' : 'conflict', id: reply[2 * i + 1] as string };
    });
  }

  private idempotencyKey(tenant: string, idempotency: Idempotency | undefined): string {
    return this.keys.idempotency(tenant, idempotency ? sha256(idempotency.scope) : '-');
  }

  /** The positions of keys already used with another body; read before anything is written. */
  async idempotencyConflicts(tenant: string, items: Idempotency[]): Promise<number[]> {
    const pipeline = this.redis.pipeline();
    for (const item of items) pipeline.get(this.idempotencyKey(tenant, item));
    const replies = (await pipeline.exec()) ?? [];
    return replies.flatMap(([, prior], i) => (typeof prior === 'string' && prior.slice(prior.indexOf(' ') + 1) !== items[i]!.bodyHash ? [i] : []));
  }

  /**
   * Takes back jobs this request created but never enqueued (an all-or-nothing bulk refused part
   * way): records, index entries, idempotency keys and the tenant's counts, as if never written.
   */
  async discard(jobs: { id: string; tenant: string; idempotency?: Idempotency | undefined }[]): Promise<void> {
    await Promise.all(
      jobs.map((j) => this.redis.discardJob(this.keys.job(j.id), this.keys.jobIndex(j.tenant), this.idempotencyKey(j.tenant, j.idempotency), this.keys.tenant(j.tenant), j.id)),
    );
  }

  /** Whose job it is and where it stands, without reading the record. */
  async peek(id: string): Promise<{ tenant: string; status: JobStatus } | null> {
    const [tenant, status] = await this.redis.hmget(this.keys.job(id), 'tenant', 'status');
    return status ? { tenant: tenant ?? '', status: status as JobStatus } : null;
  }

  async get(id: string): Promise<JobRecord | null> {
    return (await this.getMany([id]))[0] ?? null;
  }

  async getMany(ids: string[]): Promise<(JobRecord | null)[]> {
    if (ids.length === 0) return [];
    // The jobs may be of several tenants, so of several shards: see batch().
    const pipeline = batch(this.redis);
    for (const id of ids) pipeline.hmget(this.keys.job(id), ...RECORD_FIELDS);
    const replies = (await pipeline.exec()) ?? [];
    // A command that failed (Redis away) is not a missing job: the caller must not answer 404.
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
    const jobs = replies.map(([, values]) => parseRecord(values as (string | null)[]));
    // Delivery attempts live in a list of their own, read only for jobs that have a webhook.
    const hooked = jobs.filter((j): j is JobRecord => j?.webhook_url != null);
    if (hooked.length > 0) {
      const lists = batch(this.redis);
      for (const j of hooked) lists.lrange(this.keys.webhookAttempts(j.id), 0, -1);
      const entries = (await lists.exec()) ?? [];
      hooked.forEach((j, i) => {
        j.webhook_attempts = ((entries[i]?.[1] as string[] | undefined) ?? []).map((e) => JSON.parse(e) as WebhookAttempt);
      });
    }
    return jobs;
  }

  /** Appends a delivery attempt and says where the delivery stands; nothing when the record is gone. */
  async recordWebhookAttempt(id: string, attempt: WebhookAttempt, status: 'delivered' | 'failed' | 'pending'): Promise<void> {
    await this.redis.webhookAttempt(this.keys.job(id), this.keys.webhookAttempts(id), JSON.stringify(attempt), status, this.ttlMs);
  }

  /** Ids of jobs whose webhook event ended more than `olderThanMs` ago and was not handed to the sender yet. */
  async webhookOutbox(olderThanMs: number, limit: number, now = Date.now()): Promise<string[]> {
    const each = await Promise.all(this.keys.shardPrefixes.map((shard) => this.redis.zrangebyscore(this.keys.webhookOutbox(shard), '-inf', now - olderThanMs, 'LIMIT', 0, limit)));
    return each.flat().slice(0, limit);
  }

  async clearWebhookOutbox(id: string): Promise<void> {
    await this.redis.zrem(this.keys.webhookOutbox(this.keys.idShard(id)), id);
  }

  /** `log` names the hop's BullMQ job (its key) and the line its job log gets on a successful claim. */
  /** `leaseMs`: how long the call may hold the job's least-busy lease, if it has one (its timeout, and a little). */
  async start(id: string, hop: number, now = Date.now(), log?: HopLog, leaseMs = 65_000): Promise<StartOutcome> {
    const shard = this.keys.idShard(id);
    const inScript = this.hopLogInScript(log);
    const reply = (await this.redis.startAttempt(this.keys.job(id), this.keys.webhookOutbox(shard), hop, now, this.keys.events, this.ttlMs, id, shard, inScript?.bullKey ?? '', inScript?.lines.join('\n') ?? '', leaseMs)) as string[];
    if (reply[0] === 'ok') await this.hopLogApart(log);
    return this.claimedOnFetch(id, reply);
  }

  /** What the fetch's claim needs to know besides BullMQ's own arguments (see defineClaimOnFetch); none when sharded, where a record and its hop live in different slots. */
  fetchClaim(leaseMs: Record<string, number>): FetchClaim | null {
    if (this.keys.shards > 0) return null;
    const shard = this.keys.prefix;
    return { jobs: this.keys.job(''), outbox: this.keys.webhookOutbox(shard), events: this.keys.events, ttlMs: this.ttlMs, shard, leaseMs };
  }

  /** startAttempt's reply as `start` answers it; also a claim BullMQ's fetch made (see claimFetched.lua). */
  claimedOnFetch(id: string, reply: unknown[]): StartOutcome {
    switch (reply[0]) {
      case 'missing':
        return { kind: 'missing' };
      case 'expired':
        if (Number(reply[1]) === 1) this.webhookOwed?.(id);
        return { kind: 'expired' };
      case 'terminal':
        return { kind: 'terminal', status: reply[1] as JobStatus };
      case 'moved':
        return { kind: 'moved', hop: Number(reply[1]) };
      default:
        return {
          kind: 'ok',
          // JSON text from startAttempt, already parsed when the claim rode on BullMQ's fetch.
          request: (typeof reply[1] === 'string' ? JSON.parse(reply[1]) : reply[1]) as Record<string, unknown>,
          chain: (typeof reply[2] === 'string' ? JSON.parse(reply[2]) : reply[2]) as string[],
          rerun: reply[3] === 'running',
          deadlineAt: reply[4] ? Number(reply[4]) : null,
          createdAt: Number(reply[5]),
          tenant: String(reply[6] ?? ''),
          alias: reply[7] ? String(reply[7]) : null,
        };
    }
  }

  /**
   * Ends hop `hop` with `attempt` (if any) in the ledger. `moved` when the job had moved on (a stale
   * hop), `ended` when it had ended meanwhile (its call, if any, is then for `recordLate`).
   */
  /** `nextLease`: the least-busy lease zset of the next target, for a job that moves on and is leased. */
  async settle(id: string, hop: number, attempt: Attempt | null, outcome: Settlement, now = Date.now(), log?: HopLog, nextLease = ''): Promise<Settled> {
    const { keys, args } = this.settleCommand(id, hop, attempt, outcome, now, log, nextLease);
    return this.settled(id, await this.sendSettle(keys, args), log);
  }

  /**
   * `settle`, sent with BullMQ's finish of the hop `log.bullKey` (see FinishRiders) rather than on
   * its own: resolves once that finish has run. Unsharded only, where the hop's log is written in
   * the script.
   */
  async settleOnFinish(riders: FinishRiders, id: string, hop: number, attempt: Attempt | null, outcome: Settlement, log: HopLog, now = Date.now()): Promise<Settled> {
    const { keys, args } = this.settleCommand(id, hop, attempt, outcome, now, log, '');
    const riding = riders.ride(log.bullKey, keys, args);
    if (!riding) return this.settled(id, await this.sendSettle(keys, args), log);
    const { reply, resent } = await riding;
    // Sent again after a send that had no answer, "ended" is taken for this very settle applied the
    // first time: the other reading (ended by a cancel in between) would put the call in the ledger twice.
    return this.settled(id, resent && reply === 3 ? 1 : reply, log);
  }

  /** Sends alone settles that were to ride on their hop's finish and did not (FinishRiders.uncarried, leftovers). */
  async settleAlone(settles: Uncarried[]): Promise<void> {
    await Promise.all(settles.map(async ({ keys, args, settled, fail }) => {
      try {
        settled(await this.sendSettle(keys, args));
      } catch (err) {
        fail(err as Error);
      }
    }));
  }

  private async sendSettle(keys: string[], args: (string | number)[]): Promise<number> {
    return Number(await this.redis.settleAttempt(...keys, ...args));
  }

  /** What settleAttempt is sent with; see its script for each. */
  private settleCommand(id: string, hop: number, attempt: Attempt | null, outcome: Settlement, now: number, log: HopLog | undefined, nextLease: string) {
    const fields: (string | number)[] = [];
    if (outcome.status === 'succeeded') {
      fields.push('result', JSON.stringify(outcome.result));
      // The attempt that succeeded carries the same usage; parseRecord reads it from there.
      if (outcome.usage && outcome.usage !== attempt?.usage) fields.push('usage', JSON.stringify(outcome.usage));
      if (outcome.cost_usd !== null) fields.push('cost_usd', outcome.cost_usd);
    } else if (outcome.status === 'failed') {
      fields.push('error', JSON.stringify(outcome.error));
    }
    const usage = attempt?.usage;
    const shard = this.keys.idShard(id);
    const inScript = this.hopLogInScript(log);
    return {
      keys: [this.keys.job(id), this.keys.usage(attempt?.provider ?? '-', shard), this.keys.webhookOutbox(shard)],
      args: [
        hop, now, this.keys.events, this.ttlMs, id,
        attempt ? JSON.stringify(attempt) : '', outcome.status,
        usage ? usage.prompt_tokens : '', usage ? usage.completion_tokens : '',
        attempt?.cost_usd != null ? Math.round(attempt.cost_usd * 1e10) : '',
        shard,
        monthOf(now),
        inScript?.bullKey ?? '',
        inScript?.lines.join('\n') ?? '',
        nextLease,
        ...fields,
      ],
    };
  }

  private async settled(id: string, applied: number, log: HopLog | undefined): Promise<Settled> {
    if (applied === 1 || applied === 2) await this.hopLogApart(log);
    if (applied === 2) this.webhookOwed?.(id);
    return applied === 0 ? 'moved' : applied === 3 ? 'ended' : 'applied';
  }

  /**
   * A call that finished, or was stopped, after its job had ended (cancelled, expired): it goes into
   * the ledger and the totals all the same, since it happened and may have been paid for.
   */
  /** Returns the status the job had ended in (undefined when its record is gone). */
  async recordLate(id: string, attempt: Attempt, now = Date.now(), log?: HopLog): Promise<JobStatus | undefined> {
    const usage = attempt.usage;
    const shard = this.keys.idShard(id);
    const inScript = this.hopLogInScript(log);
    const status = await this.redis.lateAttempt(
      this.keys.job(id), this.keys.usage(attempt.provider, shard), JSON.stringify(attempt),
      usage ? usage.prompt_tokens : '', usage ? usage.completion_tokens : '',
      attempt.cost_usd != null ? Math.round(attempt.cost_usd * 1e10) : '', shard, monthOf(now),
      inScript?.bullKey ?? '', inScript?.lines.join('\n') ?? '',
    );
    if (status) await this.hopLogApart(log);
    return (status as unknown as string) ? (status as unknown as JobStatus) : undefined;
  }

  /** A tenant's unfinished jobs, tokens and USD, and what it spent and holds in `month`. */
  async tenantTotals(tenant: string, month = monthOf(Date.now())) {
    const t = await this.redis.hgetall(this.keys.tenant(tenant));
    return {
      queued: Math.max(0, Number(t.queued ?? 0)),
      prompt_tokens: Number(t.prompt_tokens ?? 0),
      completion_tokens: Number(t.completion_tokens ?? 0),
      cost_usd: Number(t.cost_e10 ?? 0) / 1e10,
      month_spend_usd: Number(t[`spend_e10:${month}`] ?? 0) / 1e10,
      /** Held for unfinished jobs against this month's budget, from their estimates. */
      month_reserved_usd: Math.max(0, Number(t[`reserved_e10:${month}`] ?? 0)) / 1e10,
    };
  }

  /** Attempts, tokens and USD per provider since the totals began. */
  async providerTotals(provider: string) {
    const shards = await Promise.all(this.keys.shardPrefixes.map((shard) => this.redis.hgetall(this.keys.usage(provider, shard))));
    const sum = (field: string) => shards.reduce((n, t) => n + Number(t[field] ?? 0), 0);
    return {
      attempts: sum('attempts'),
      succeeded: sum('succeeded'),
      prompt_tokens: sum('prompt_tokens'),
      completion_tokens: sum('completion_tokens'),
      cost_usd: sum('cost_e10') / 1e10,
    };
  }

  /**
   * Re-opens a failed job at the hop that failed (an operator's retry), with `entry` in its ledger,
   * or says why it may not be.
   */
  async reopen(id: string, hop: number, entry: Attempt, now = Date.now()): Promise<{ ok: true; reopened: number } | { ok: false; reason: ReopenRefusal; detail: string }> {
    const [ok, a, b] = (await this.redis.reopenJob(this.keys.job(id), hop, JSON.stringify(entry), this.keys.idShard(id), now)) as [number, string | number, string];
    return ok === 1 ? { ok: true, reopened: Number(a) } : { ok: false, reason: a as ReopenRefusal, detail: String(b ?? '') };
  }

  /**
   * Ends a job from outside its hop: the caller cancelled it, or its deadline passed. With
   * `onlyQueued`, a job that has started is left to finish (`started`).
   */
  async end(id: string, status: 'cancelled' | 'expired', now = Date.now(), message?: string, onlyQueued = false): Promise<EndOutcome> {
    const error: JobError =
      status === 'cancelled'
        ? { type: 'cancelled', message: message ?? 'the job was cancelled by the caller' }
        : { type: 'deadline_exceeded', message: message ?? 'the job did not finish before its deadline' };
    const shard = this.keys.idShard(id);
    const reply = (await this.redis.endJob(this.keys.job(id), this.keys.webhookOutbox(shard), now, this.keys.events, this.ttlMs, id, status, JSON.stringify(error), shard, onlyQueued ? '1' : '', this.keys.jobCancels)) as string[];
    if (reply[0] === 'missing') return { kind: 'missing' };
    if (reply[0] === 'terminal') return { kind: 'terminal', status: reply[1] as JobStatus };
    if (reply[0] === 'started') return { kind: 'started', status: reply[1] as JobStatus };
    if (Number(reply[3]) === 1) this.webhookOwed?.(id);
    return { kind: 'ended', hop: Number(reply[1]), previous: reply[2] as JobStatus };
  }

  /**
   * Newest first; `after` is the last id of the previous page. A page reads only the status of the
   * jobs it passes over, and whole records only for the jobs it returns; a filtered page looks
   * at no more than LIST_SCAN_LIMIT jobs, and when it stops there short of a full page it says so
   * with `cursor` (the last id it looked at), so the next page goes on from there.
   */
  async list(tenant: string, opts: ListOptions): Promise<{ jobs: JobRecord[]; hasMore: boolean; cursor?: string }> {
    const index = this.keys.jobIndex(tenant);
    let max = '+inf';
    let afterId: string | undefined;
    if (opts.after) {
      const score = await this.redis.zscore(index, opts.after);
      if (score === null) return { jobs: [], hasMore: false };
      max = score;
      afterId = opts.after;
    }
    const picked: string[] = [];
    let offset = 0;
    let scanned = 0;
    let last: string | undefined;
    const batch = opts.status ? 500 : Math.max(opts.limit + 1, 100);
    while (scanned < LIST_SCAN_LIMIT) {
      const page = await this.redis.zrevrangebyscore(index, max, '-inf', 'WITHSCORES', 'LIMIT', offset, batch);
      if (page.length === 0) break;
      offset += page.length / 2;
      const ids: string[] = [];
      for (let i = 0; i < page.length; i += 2) {
        const id = page[i]!;
        // Equal scores come in reverse lexical order, so skip the cursor and its newer siblings.
        if (afterId && page[i + 1] === max && id >= afterId) continue;
        ids.push(id);
      }
      // Statuses only, also unfiltered: an index entry whose record has expired is passed over (and
      // dropped), so a page is never short or empty while more jobs follow.
      const statuses = await this.statuses(ids);
      const gone = ids.filter((_, k) => statuses[k] === undefined);
      if (gone.length > 0) {
        await this.redis.zrem(index, ...gone);
        // They no longer take a place in the index, so the next page starts that much earlier.
        offset -= gone.length;
      }
      let stopped = false;
      for (let k = 0; k < ids.length; k++) {
        if (scanned >= LIST_SCAN_LIMIT) {
          stopped = true;
          break;
        }
        scanned++;
        const wanted = statuses[k] !== undefined && (!opts.status || statuses[k] === opts.status);
        if (wanted && picked.length === opts.limit) return { jobs: await this.records(picked), hasMore: true };
        if (wanted) picked.push(ids[k]!);
        last = ids[k];
      }
      if (stopped) break;
      if (page.length / 2 < batch) return { jobs: await this.records(picked), hasMore: false };
    }
    const jobs = await this.records(picked);
    return { jobs, hasMore: true, ...(last && { cursor: last }) };
  }

  /** Each job's status (undefined where the record has gone). */
  private async statuses(ids: string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(this.keys.job(id), 'status');
    return ((await pipeline.exec()) ?? []).map(([err, v]) => (err || v === null ? undefined : (v as string)));
  }

  private async records(ids: string[]): Promise<JobRecord[]> {
    return (await this.getMany(ids)).filter((j): j is JobRecord => j !== null);
  }
}
