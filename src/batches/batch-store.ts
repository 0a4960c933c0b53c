import type { Redis } from 'ioredis';
import type { WebhookAttempt, WebhookStatus } from '../store/job-record.js';
import type { Keys } from '../store/keys.js';
import { pageIds } from '../store/pagination.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';

export const BATCH_STATUSES = ['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

export interface BatchLineError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

/** Timestamps (Unix seconds) the OpenAI batch object carries, set as the batch moves. */
const STAMPS = ['in_progress_at', 'finalizing_at', 'completed_at', 'failed_at', 'expired_at', 'cancelling_at', 'cancelled_at'] as const;
type Stamp = (typeof STAMPS)[number];

const FIELDS = [
  'tenant', 'status', 'total', 'completed', 'failed', 'endpoint', 'input_file_id', 'completion_window', 'created_at',
  'expires_at', 'output_file_id', 'error_file_id', 'errors', 'metadata', 'enqueued', 'start_done', 'webhook_url', 'webhook_status', ...STAMPS,
] as const;

/**
 * How long a batch's admission (its lease on the tenant's limits) lives: until its completion
 * window closes and an hour beyond, so finalizing a late batch still finds it.
 */
export const batchLeaseMs = (expiresAtMs: number, now = Date.now()) => Math.max(0, expiresAtMs - now) + 3_600_000;


export type BatchRecord = Record<(typeof FIELDS)[number], string | null>;

/**
 * Batches as Redis hashes, one field per fact, so the batch worker, the API's cancel and the job
 * scripts' counters (completed / failed, incremented as each line's job ends) never overwrite each
 * other. Line i's job is field i of a second hash.
 */
export class BatchStore {
  private readonly redis: ScriptClient;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly ttlMs: number,
  ) {
    this.redis = withScripts(redis);
  }

  /** A new batch's id: it names the tenant's shard (see Keys). */
  newId(tenant: string): string {
    return this.keys.newBatchId(tenant);
  }

  async create(b: { id: string; tenant: string; inputFileId: string; endpoint: string; window: string; windowMs: number; metadata: Record<string, string> | null }): Promise<string> {
    const { id } = b;
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.keys.batch(id), {
        tenant: b.tenant, status: 'validating', endpoint: b.endpoint, input_file_id: b.inputFileId, completion_window: b.window,
        created_at: Math.floor(now / 1000), expires_at: Math.floor((now + b.windowMs) / 1000), metadata: JSON.stringify(b.metadata),
        completed: 0, failed: 0,
      })
      .pexpire(this.keys.batch(id), this.ttlMs)
      .zadd(this.keys.batchIndex(b.tenant), now, id)
      .exec();
    return id;
  }

  async get(id: string): Promise<BatchRecord | null> {
    const values = await this.redis.hmget(this.keys.batch(id), ...FIELDS);
    if (!values[0]) return null;
    return Object.fromEntries(FIELDS.map((f, i) => [f, values[i] ?? null])) as BatchRecord;
  }

  /**
   * Moves the batch to `status` if it is in one of `from` (compare and set: steps and a cancel race),
   * stamping `<stamp>` with now, plus any other fields. Says whether it moved, from what, and whether
   * the start step has finished enqueueing (see `startDone`).
   */
  async move(id: string, from: BatchStatus[], status: BatchStatus, stamp: Stamp | null, extra: Record<string, string | number> = {}): Promise<{ moved: boolean; previous: string; startDone: boolean }> {
    const fields = Object.entries(extra).flat();
    const [moved, previous, startDone] = (await this.redis.batchTransition(this.keys.batch(id), status, stamp ?? '', Math.floor(Date.now() / 1000), from.join(','), ...fields)) as [number, string, string];
    return { moved: moved === 1, previous, startDone: startDone === '1' };
  }

  /** The start step has stopped making jobs (done, or stopped by a cancel): a cancel may count what it made. */
  async markStartDone(id: string): Promise<void> {
    await this.redis.hset(this.keys.batch(id), 'start_done', 1);
  }

  async set(id: string, fields: Record<string, string | number>): Promise<void> {
    await this.redis.hset(this.keys.batch(id), fields);
  }

  /** Records the jobs of one chunk of lines, each under its line number, and that lines up to `lastLine` are enqueued. */
  async recordLines(id: string, lastLine: number, entries: { line: number; jobId: string; customId: string }[]): Promise<void> {
    const tx = this.redis.multi();
    if (entries.length > 0) tx.hset(this.keys.batchJobs(id), Object.fromEntries(entries.map((e) => [String(e.line), `${e.jobId}\t${e.customId}`]))).pexpire(this.keys.batchJobs(id), this.ttlMs);
    await tx.hset(this.keys.batch(id), 'enqueued', lastLine).exec();
  }

  /** Appends one attempt at delivering the batch's event; `status` is where the delivery stands. */
  async recordWebhookAttempt(id: string, attempt: WebhookAttempt, status: 'delivered' | 'failed' | 'pending'): Promise<void> {
    await this.redis.webhookAttempt(this.keys.batch(id), this.keys.batchWebhookAttempts(id), JSON.stringify(attempt), status, this.ttlMs);
  }

  async webhookAttempts(id: string): Promise<WebhookAttempt[]> {
    return (await this.redis.lrange(this.keys.batchWebhookAttempts(id), 0, -1)).map((a) => JSON.parse(a) as WebhookAttempt);
  }

  /** How many jobs the batch has made so far. */
  async jobCount(id: string): Promise<number> {
    return this.redis.hlen(this.keys.batchJobs(id));
  }

  /** Lines `from`..`to` (1-based, inclusive) as job id and custom_id. */
  async lines(id: string, from: number, to: number): Promise<{ line: number; jobId: string; customId: string }[]> {
    const indexes = Array.from({ length: to - from + 1 }, (_, k) => String(from + k));
    if (indexes.length === 0) return [];
    const values = await this.redis.hmget(this.keys.batchJobs(id), ...indexes);
    return values.flatMap((v, k) => {
      if (!v) return [];
      const tab = v.indexOf('\t');
      return [{ line: from + k, jobId: v.slice(0, tab), customId: v.slice(tab + 1) }];
    });
  }

  /** Re-checks completion after `total` changed (a cancel stopped the batch part way through enqueueing). */
  async checkDone(id: string): Promise<void> {
    const [completed, failed, total] = await this.redis.hmget(this.keys.batch(id), 'completed', 'failed', 'total');
    if (total !== null && Number(completed) + Number(failed) >= Number(total)) await this.redis.sadd(this.keys.batchesDone(this.keys.idShard(id)), id);
  }

  async list(tenant: string, limit: number, after?: string): Promise<{ data: [string, BatchRecord][]; hasMore: boolean }> {
    const ids = await pageIds(this.redis, this.keys.batchIndex(tenant), limit, after);
    const records = await Promise.all(ids.slice(0, limit).map(async (id) => [id, await this.get(id)] as const));
    return { data: records.filter((r): r is [string, BatchRecord] => r[1] !== null), hasMore: ids.length > limit };
  }

  async takeDone(): Promise<string[]> {
    return (await Promise.all(this.keys.shardPrefixes.map((shard) => this.redis.smembers(this.keys.batchesDone(shard))))).flat();
  }

  async clearDone(id: string): Promise<void> {
    await this.redis.srem(this.keys.batchesDone(this.keys.idShard(id)), id);
  }
}

/**
 * OpenAI's batch object, and `webhook` (Switchyard's own: where its terminal event goes and how its
 * delivery stands; the SDK passes unknown fields through).
 */
export function toPublicBatch(id: string, b: BatchRecord, webhookAttempts: WebhookAttempt[] = []) {
  const num = (v: string | null) => (v === null ? null : Number(v));
  return {
    id,
    object: 'batch' as const,
    endpoint: b.endpoint,
    errors: b.errors ? { object: 'list' as const, data: JSON.parse(b.errors) as BatchLineError[] } : null,
    input_file_id: b.input_file_id,
    completion_window: b.completion_window,
    status: b.status as BatchStatus,
    output_file_id: b.output_file_id,
    error_file_id: b.error_file_id,
    created_at: num(b.created_at),
    in_progress_at: num(b.in_progress_at),
    expires_at: num(b.expires_at),
    finalizing_at: num(b.finalizing_at),
    completed_at: num(b.completed_at),
    failed_at: num(b.failed_at),
    expired_at: num(b.expired_at),
    cancelling_at: num(b.cancelling_at),
    cancelled_at: num(b.cancelled_at),
    request_counts: { total: num(b.total) ?? 0, completed: num(b.completed) ?? 0, failed: num(b.failed) ?? 0 },
    metadata: b.metadata ? (JSON.parse(b.metadata) as Record<string, string> | null) : null,
    webhook: b.webhook_url
      ? { url: b.webhook_url, status: (b.webhook_status ?? 'pending') as WebhookStatus, attempts: webhookAttempts.map((a) => ({ ...a, at: Math.floor(a.at / 1000) })) }
      : null,
  };
}
