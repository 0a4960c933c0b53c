/** Every Redis key and channel Switchyard owns, under one prefix (a hash tag such as `{sy}` for Cluster). */
export class Keys {
  constructor(readonly prefix: string) {}

  job(id: string): string {
    return `${this.prefix}:job:${id}`;
  }

  jobIndex(tenant: string): string {
    return `${this.prefix}:jobs:${tenant}`;
  }

  idempotency(tenant: string, keyHash: string): string {
    return `${this.prefix}:idem:${tenant}:${keyHash}`;
  }

  get events(): string {
    return `${this.prefix}:job-events`;
  }

  /** Where endJob.lua names a running job it ended (cancelled, expired), so the worker holding its call stops it. */
  get jobCancels(): string {
    return `${this.prefix}:job-cancels`;
  }

  /** Job ids whose terminal event is owed to a webhook, scored by when they ended. */
  get webhookOutbox(): string {
    return `${this.prefix}:webhook-outbox`;
  }

  /** The chunks a streaming job has sent, in order (a Redis Stream, entry `0-<n>` for chunk n). */
  stream(id: string): string {
    return `${this.prefix}:stream:${id}`;
  }

  /** The webhook delivery attempts of one job (a list of JSON entries). */
  webhookAttempts(id: string): string {
    return `${this.prefix}:job:${id}:webhook`;
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
    return `${this.prefix}:batch:${id}`;
  }

  /** Line index → "<job id>\t<custom_id>" for one batch. */
  batchJobs(id: string): string {
    return `${this.prefix}:batch:${id}:jobs`;
  }

  /** The delivery attempts of one batch's event (a list of JSON entries). */
  batchWebhookAttempts(id: string): string {
    return `${this.prefix}:batch:${id}:webhook`;
  }

  batchIndex(tenant: string): string {
    return `${this.prefix}:batches:${tenant}`;
  }

  /** Batches whose every job has ended, waiting to be finalized (filled by the Lua scripts). */
  get batchesDone(): string {
    return `${this.prefix}:batches-done`;
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
    return `${this.prefix}:tenant:${name}`;
  }

  /** Admission leases of one tenant (see src/lua/admitJobs.lua): lease id → expiry. */
  tenantLeases(name: string): string {
    return `${this.prefix}:tenant:${name}:leases`;
  }

  /** What each of a tenant's admission leases holds: lease id → "jobs spend_e10 month". */
  tenantLeaseSizes(name: string): string {
    return `${this.prefix}:tenant:${name}:lease-sizes`;
  }

  /** Running totals for one provider: attempts, tokens, cost. */
  usage(provider: string): string {
    return `${this.prefix}:usage:${provider}`;
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
  inflight(target: string): string {
    return `${this.prefix}:inflight:${target}`;
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
  alias(name: string): string {
    return `${this.prefix}:alias:${name}`;
  }

  /** The target that last served a prompt prefix through an alias with affinity. */
  affinity(alias: string, prefixHash: string): string {
    return `${this.prefix}:affinity:${alias}:${prefixHash}`;
  }

  /** Set once when a budget crosses a threshold in a month, so one process logs and counts it. */
  budgetCrossing(scope: string, month: string, level: string): string {
    return `${this.prefix}:budget-crossing:${scope}:${month}:${level}`;
  }
}
