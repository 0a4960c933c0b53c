import { randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';

/** The 64 characters an id's shard is written with (base64url's, so ids keep their alphabet). */
const SHARD_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
export const MAX_SHARDS = SHARD_CHARS.length;

/** FNV-1a: a tenant's shard must be the same in every process, whatever its language runtime. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const SLOTS = 16_384;

/** What a hash-tagged prefix tags: `sy` for `{sy}`; the sharded layout's own tags start with it. */
export function tagOf(prefix: string): string {
  return prefix.replace(/^\{(.*)\}$/, '$1');
}

/** Ids' random bytes come from a pool filled a few KB at a time: one call into crypto a job costs the intake more than the bytes do. */
const POOL_BYTES = 4096;
let pool = randomBytes(POOL_BYTES);
let used = 0;
function randomChunk(bytes: number): Buffer {
  if (used + bytes > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  used += bytes;
  return pool.subarray(used - bytes, used);
}

/**
 * Shard k's hash tag: `{sy:k}`, or `{sy:k-i}` for the first i that puts it in the k-th of `n` equal
 * slices of Redis Cluster's slots. A cluster splits its slots into ranges, evenly unless told
 * otherwise, so each master then holds its share of the shards rather than whatever CRC16 gives.
 */
function spreadTag(tag: string, k: number, n: number): string {
  for (let i = 0; ; i++) {
    const t = i === 0 ? `${tag}:${k}` : `${tag}:${k}-${i}`;
    if (Math.floor((calculateSlot(t) * n) / SLOTS) === k) return `{${t}}`;
  }
}

/**
 * Every Redis key and channel Switchyard owns, under one prefix (a hash tag such as `{sy}` for Cluster).
 *
 * With `shards` > 0 (redis.shards) the keys a job's scripts touch leave the prefix's slot for one of
 * `shards` slots of their own, `{sy:0}` … `{sy:<n-1>}`, so Redis Cluster spreads them over its
 * masters. A tenant's jobs, batches, indexes and counters share its shard, so every script still
 * touches one slot: admission, the ledger and a job's end stay single atomic steps. Ids carry their
 * shard (the character after `job_` / `batch_`), so a worker or a poll finds the record from the
 * id alone; the shards' tags are picked so they spread evenly over the slots (spreadTag). Counters that are global (provider usage, alias spend, least-busy leases, the webhook
 * outbox, finished batches) are kept per shard and summed by their readers. Everything not touched
 * per job (breakers, budgets, routing state, files, streams, the webhook and deadline queues) stays
 * in the prefix's slot.
 */
export class Keys {
  /** The slot prefixes counters are kept under: the prefix alone when unsharded. */
  readonly shardPrefixes: string[];

  constructor(
    readonly prefix: string,
    readonly shards = 0,
  ) {
    this.shardPrefixes = shards > 0 ? Array.from({ length: shards }, (_, k) => spreadTag(tagOf(prefix), k, shards)) : [prefix];
  }

  /** The slot prefix of a tenant's jobs, batches and counters. */
  tenantShard(tenant: string): string {
    return this.shards > 0 ? this.shardPrefixes[fnv1a(tenant) % this.shards]! : this.prefix;
  }

  /** The slot prefix an id names; an id that names none (a caller's typo) maps to some shard and is simply not found. */
  idShard(id: string): string {
    if (this.shards === 0) return this.prefix;
    const k = SHARD_CHARS.indexOf(id.charAt(id.indexOf('_') + 1));
    return this.shardPrefixes[Math.max(0, k) % this.shards]!;
  }

  /** `job_` plus 20 url-safe random characters (120 bits), the first naming the tenant's shard when sharded. */
  newJobId(tenant: string): string {
    return this.newId('job_', tenant, 15);
  }

  newBatchId(tenant: string): string {
    return this.newId('batch_', tenant, 12);
  }

  private newId(kind: string, tenant: string, bytes: number): string {
    const random = randomChunk(bytes).toString('base64url');
    if (this.shards === 0) return `${kind}${random}`;
    return `${kind}${SHARD_CHARS[this.shardPrefixes.indexOf(this.tenantShard(tenant))]}${random.slice(1)}`;
  }

  job(id: string): string {
    return `${this.idShard(id)}:job:${id}`;
  }

  /** A job's request, kept beside its record until the job ends (a failed job's for as long as its record). */
  jobRequest(id: string): string {
    return `${this.job(id)}:request`;
  }

  jobIndex(tenant: string): string {
    return `${this.tenantShard(tenant)}:jobs:${tenant}`;
  }

  idempotency(tenant: string, keyHash: string): string {
    return `${this.tenantShard(tenant)}:idem:${tenant}:${keyHash}`;
  }

  get events(): string {
    return `${this.prefix}:job-events`;
  }

  /** Where endJob.lua names a running job it ended (cancelled, expired), so the worker holding its call stops it. */
  get jobCancels(): string {
    return `${this.prefix}:job-cancels`;
  }

  /** Job ids whose terminal event is owed to a webhook, scored by when they ended; one per shard. */
  webhookOutbox(shard: string): string {
    return `${shard}:webhook-outbox`;
  }

  /** The chunks a streaming job has sent, in order (a Redis Stream, entry `0-<n>` for chunk n). */
  stream(id: string): string {
    return `${this.prefix}:stream:${id}`;
  }

  /** The webhook delivery attempts of one job (a list of JSON entries). */
  webhookAttempts(id: string): string {
    return `${this.idShard(id)}:job:${id}:webhook`;
  }

  file(id: string): string {
    return `${this.prefix}:file:${id}`;
  }

  fileLines(id: string): string {
    return `${this.prefix}:file:${id}:lines`;
  }

  fileIndex(tenant: string): string {
    return `${this.prefix}:files:${tenant}`;
  }

  /** Must match the key the Lua scripts build from the prefix. */
  batch(id: string): string {
    return `${this.idShard(id)}:batch:${id}`;
  }

  /** Line index → "<job id>\t<custom_id>" for one batch. */
  batchJobs(id: string): string {
    return `${this.idShard(id)}:batch:${id}:jobs`;
  }

  /** The delivery attempts of one batch's event (a list of JSON entries). */
  batchWebhookAttempts(id: string): string {
    return `${this.idShard(id)}:batch:${id}:webhook`;
  }

  batchIndex(tenant: string): string {
    return `${this.tenantShard(tenant)}:batches:${tenant}`;
  }

  /** Batches whose every job has ended, waiting to be finalized (filled by the Lua scripts); one per shard. */
  batchesDone(shard: string): string {
    return `${shard}:batches-done`;
  }

  breaker(provider: string): string {
    return `${this.prefix}:breaker:${provider}`;
  }

  breakerTrials(provider: string): string {
    return `${this.prefix}:breaker:${provider}:trials`;
  }

  get breakerEvents(): string {
    return `${this.prefix}:breaker-events`;
  }

  /** One tenant's unfinished jobs, tokens, cost, and spend per month; must match the Lua scripts' key. */
  tenant(name: string): string {
    return `${this.tenantShard(name)}:tenant:${name}`;
  }

  /** Admission leases of one tenant (see src/lua/admitJobs.lua): lease id → expiry. */
  tenantLeases(name: string): string {
    return `${this.tenantShard(name)}:tenant:${name}:leases`;
  }

  /** What each of a tenant's admission leases holds: lease id → "jobs spend_e10 month". */
  tenantLeaseSizes(name: string): string {
    return `${this.tenantShard(name)}:tenant:${name}:lease-sizes`;
  }

  /** One tenant's fixed-window request counter (its `rpm` limit), beside its other counters. */
  tenantWindow(name: string): string {
    return `${this.tenantShard(name)}:budget:intake:${name}`;
  }

  /** Running totals for one provider: attempts, tokens, cost; one per shard (see providerTotals). */
  usage(provider: string, shard: string): string {
    return `${shard}:usage:${provider}`;
  }

  /** A fixed-window usage counter: `tpm:openai`, `rpm:openai:gpt-4o`, ... */
  budget(name: string): string {
    return `${this.prefix}:budget:${name}`;
  }

  /** One tenant's file ledger (see src/lua/fileQuota.lua): `used` bytes and each file's bytes. */
  fileQuota(tenant: string): string {
    return `${this.prefix}:file-quota:${tenant}`;
  }

  /** One tenant's files (uploads in progress too) by expiry time, so the ledger forgets expired ones. */
  fileExpiry(tenant: string): string {
    return `${this.prefix}:file-expiry:${tenant}`;
  }

  /** Held while one redelivery request checks for a pending one and enqueues, so two at once cannot both pass. */
  webhookRedeliverLock(id: string): string {
    return `${this.prefix}:webhook-redeliver-lock:${id}`;
  }

  /** Jobs assigned to a `least_busy` target and not finished: job id → lease expiry (see src/lua/includes/inflight.lua). */
  inflight(target: string, shard: string): string {
    return `${shard}:inflight:${target}`;
  }

  /** Each target's decaying latency per output token (`<target>` ms, `<target>:at` when last fed); must match recordStats.lua. */
  get routingLatency(): string {
    return `${this.prefix}:routing:latency`;
  }

  /** Each target's attempts and fallbacks (`<target>:attempts`, `<target>:fallbacks`), fed by recordStats.lua. */
  get routingTargets(): string {
    return `${this.prefix}:routing:targets`;
  }

  /** Each alias's jobs and fallbacks (`<alias>:jobs`, `<alias>:fallbacks`), fed by recordStats.lua. */
  get routingAliases(): string {
    return `${this.prefix}:routing:aliases`;
  }

  /** One provider's health as recordStats.lua last judged it: state, since, p95, baseline, error rate. */
  health(provider: string): string {
    return `${this.prefix}:health:${provider}`;
  }

  /** One alias's spend per month (`spend_e10:<YYYY-MM>`), counted with each attempt; must match countAttempt.lua. */
  alias(name: string, shard: string): string {
    return `${shard}:alias:${name}`;
  }

  /** The target that last served a prompt prefix through an alias with affinity. */
  affinity(alias: string, prefixHash: string, shard: string): string {
    return `${shard}:affinity:${alias}:${prefixHash}`;
  }

  /** Set once when a budget crosses a threshold in a month, so one process logs and counts it. */
  budgetCrossing(scope: string, month: string, level: string): string {
    return `${this.prefix}:budget-crossing:${scope}:${month}:${level}`;
  }
}
