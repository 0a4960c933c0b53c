import type { ChainableCommander, Redis } from 'ioredis';
import { batch } from '../redis/batch.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { splitTarget } from '../store/job-record.js';
import { monthOf } from '../store/job-store.js';
import type { Keys } from '../store/keys.js';

export interface ProviderHealth {
  state: 'healthy' | 'degraded';
  /** error_rate or latency, for a degraded provider. */
  reason: string | null;
  since: number | null;
  requests: number;
  error_rate: number | null;
  /** p95 latency per output token over the window, and the provider's own baseline for it (ms). */
  p95_ms_per_token: number | null;
  baseline_ms_per_token: number | null;
}

/** What strategies read: the shared state as this process last saw it, plus what it has routed since. */
export interface RoutingSnapshot {
  /** Jobs leased to a `least_busy` target and not finished, across every process. */
  busy(target: string): number;
  /** The decaying average latency per output token (ms), or undefined for a target never measured. */
  latencyPerToken(target: string): number | undefined;
  /** Share of the tightest rate limit (rpm/tpm, provider or model) still free in its window: 1 for none. */
  headroom(provider: string, model: string): number;
  health(provider: string): ProviderHealth;
}

/** What the workers have recorded per target and per alias, for GET /v1/providers and /metrics. */
export interface RoutingStats {
  targets: Map<string, { attempts: number; fallbacks: number; latency_ms_per_token: number | null; in_flight: number | null }>;
  aliases: Map<string, { jobs: number; fallbacks: number }>;
}

const HEALTHY: ProviderHealth = { state: 'healthy', reason: null, since: null, requests: 0, error_rate: null, p95_ms_per_token: null, baseline_ms_per_token: null };

/**
 * A job routed here shows in the leases once its record is written (createJobs), a few ms later,
 * more for a big bulk request. Until a read started this long after it, it also counts locally:
 * counted twice for a moment rather than not at all.
 */
const CREATE_MARGIN_MS = 500;

/** Four significant digits: enough to read a figure by, short in a record or a view. */
export const fourDigits = (n: number) => Number(n.toPrecision(4));

/** A pipeline's replies, or the first error among them. */
async function repliesOf(p: ChainableCommander): Promise<unknown[]> {
  return ((await p.exec()) ?? []).map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

const num = (v: string | null | undefined) => (v === null || v === undefined || v === '' ? null : Number(v));

/**
 * The routing state every process shares through Redis (least-busy leases, latencies, health,
 * rate-limit use, spend), read by each process every `routing.state_refresh_ms` in one pipeline, so
 * routing a job costs no Redis round trip of its own. Between reads, jobs this process routes to a
 * least-busy target count against it locally, so a burst does not all go to the one that was idle.
 * Only what the config's aliases need is read.
 */
export class RoutingState implements RoutingSnapshot {
  private leases = new Map<string, number>();
  /** When this process routed each job to a least-busy target, until a read surely includes it. */
  private readonly routedAt = new Map<string, number[]>();
  private latency = new Map<string, number>();
  private healths = new Map<string, ProviderHealth>();
  private used = new Map<string, number>();
  private spent = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly leaseTargets: string[];
  private readonly usageTargets: { provider: string; model: string }[];
  private readonly readLatency: boolean;
  private readonly budgetedAliases: string[];
  private readonly budgetedTenants: string[];

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly config: Pick<Config, 'models' | 'providers' | 'routing' | 'auth'>,
    /** The key BullMQ's limiter counts a provider's requests in (its rpm). */
    private readonly limiterKey: (provider: string) => string,
    private readonly log?: Logger,
  ) {
    const targetsOf = (strategy: string) => [...new Set(Object.values(config.models).filter((a) => a.strategy === strategy).flatMap((a) => a.targets.map((t) => t.target)))];
    this.leaseTargets = targetsOf('least_busy');
    this.usageTargets = targetsOf('usage').map(splitTarget);
    this.readLatency = targetsOf('latency').length > 0;
    this.budgetedAliases = Object.entries(config.models).filter(([, a]) => a.monthly_budget_usd !== undefined).map(([name]) => name);
    this.budgetedTenants = config.auth.api_keys.filter((k) => k.limits?.downgrade_to !== undefined).map((k) => k.name);
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh().catch((err: unknown) => this.log?.warn({ err }, 'routing state refresh failed; routing on the last one read')), this.config.routing.state_refresh_ms);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Reads everything in one batch (src/redis/batch.ts) and swaps it in whole. */
  async refresh(now = Date.now()): Promise<void> {
    const p = batch(this.redis);
    const providers = Object.keys(this.config.providers);
    const shards = this.keys.shardPrefixes;
    // Leases and alias spend are kept per shard (see Keys): one read of each, summed.
    for (const t of this.leaseTargets) for (const s of shards) p.zremrangebyscore(this.keys.inflight(t, s), '-inf', now).zcard(this.keys.inflight(t, s));
    if (this.readLatency) p.hgetall(this.keys.routingLatency);
    for (const name of providers) p.hgetall(this.keys.health(name));
    const limits: { key: string; limit: number; provider: string; model: string }[] = [];
    for (const { provider, model } of this.usageTargets) {
      const settings = this.config.providers[provider];
      if (!settings) continue;
      const m = settings.models?.[model];
      if (settings.rpm) limits.push({ key: this.limiterKey(provider), limit: settings.rpm, provider, model });
      if (settings.tpm) limits.push({ key: this.keys.budget(`tpm:${provider}`), limit: settings.tpm, provider, model });
      if (m?.rpm) limits.push({ key: this.keys.budget(`rpm:${provider}:${model}`), limit: m.rpm, provider, model });
      if (m?.tpm) limits.push({ key: this.keys.budget(`tpm:${provider}:${model}`), limit: m.tpm, provider, model });
    }
    for (const l of limits) p.get(l.key);
    const month = monthOf(now);
    for (const a of this.budgetedAliases) for (const s of shards) p.hget(this.keys.alias(a, s), `spend_e10:${month}`);
    for (const t of this.budgetedTenants) p.hget(this.keys.tenant(t), `spend_e10:${month}`);
    const replies = await repliesOf(p);
    let i = 0;
    const leases = new Map<string, number>();
    for (const t of this.leaseTargets) {
      let n = 0;
      for (let k = 0; k < shards.length; k++) {
        i++;
        n += Number(replies[i++]);
      }
      leases.set(t, n);
    }
    const latency = new Map<string, number>();
    if (this.readLatency) {
      for (const [field, value] of Object.entries(replies[i++] as Record<string, string>)) if (!field.endsWith(':at')) latency.set(field, Number(value));
    }
    const healths = new Map<string, ProviderHealth>();
    for (const name of providers) {
      const h = replies[i++] as Record<string, string>;
      if (h.state) {
        healths.set(name, {
          state: h.state === 'degraded' ? 'degraded' : 'healthy', reason: h.reason || null, since: num(h.since), requests: Number(h.requests ?? 0),
          error_rate: num(h.error_rate), p95_ms_per_token: num(h.p95), baseline_ms_per_token: num(h.baseline),
        });
      }
    }
    const used = new Map<string, number>();
    for (const l of limits) {
      const count = Number(replies[i++] ?? 0);
      // BullMQ's limiter key holds a huge number while the queue is paused by rateLimit(): no headroom.
      const share = count > 1e12 ? 1 : Math.min(1, count / l.limit);
      const key = `${l.provider}/${l.model}`;
      used.set(key, Math.max(used.get(key) ?? 0, share));
    }
    const spent = new Map<string, number>();
    for (const a of this.budgetedAliases) {
      let n = 0;
      for (let k = 0; k < shards.length; k++) n += Number(replies[i++] ?? 0);
      spent.set(`alias:${a}`, n);
    }
    for (const t of this.budgetedTenants) spent.set(`tenant:${t}`, Number(replies[i++] ?? 0));
    this.leases = leases;
    for (const [target, times] of this.routedAt) {
      const kept = times.filter((t) => t > now - CREATE_MARGIN_MS);
      if (kept.length > 0) this.routedAt.set(target, kept);
      else this.routedAt.delete(target);
    }
    this.latency = latency;
    this.healths = healths;
    this.used = used;
    this.spent = spent;
  }

  busy(target: string): number {
    return (this.leases.get(target) ?? 0) + (this.routedAt.get(target)?.length ?? 0);
  }

  /** A job this process just routed to a least-busy target: it counts there until the next read shows its lease. */
  routed(target: string, now = Date.now()): void {
    const times = this.routedAt.get(target);
    if (times) times.push(now);
    else this.routedAt.set(target, [now]);
  }

  latencyPerToken(target: string): number | undefined {
    return this.latency.get(target);
  }

  headroom(provider: string, model: string): number {
    return 1 - (this.used.get(`${provider}/${model}`) ?? 0);
  }

  health(provider: string): ProviderHealth {
    return this.healths.get(provider) ?? HEALTHY;
  }

  /** This month's spend (1e-10 USD) of a budgeted alias or of a tenant with a downgrade, as last read. */
  spendOf(scope: `alias:${string}` | `tenant:${string}`): number {
    return this.spent.get(scope) ?? 0;
  }

  /** Read on demand (an operator's view, not the hot path): every target's and alias's counts, and least-busy leases. */
  async stats(now = Date.now()): Promise<RoutingStats> {
    const p = batch(this.redis).hgetall(this.keys.routingTargets).hgetall(this.keys.routingAliases).hgetall(this.keys.routingLatency);
    const shards = this.keys.shardPrefixes;
    for (const t of this.leaseTargets) for (const s of shards) p.zcount(this.keys.inflight(t, s), `(${now}`, '+inf');
    const replies = await repliesOf(p);
    const [counts, aliasCounts, latency] = replies as Record<string, string>[];
    const targets: RoutingStats['targets'] = new Map();
    const target = (name: string) => {
      let t = targets.get(name);
      if (!t) targets.set(name, (t = { attempts: 0, fallbacks: 0, latency_ms_per_token: null, in_flight: null }));
      return t;
    };
    const split = (field: string) => [field.slice(0, field.lastIndexOf(':')), field.slice(field.lastIndexOf(':') + 1)] as const;
    for (const [field, value] of Object.entries(counts!)) {
      const [name, kind] = split(field);
      if (kind === 'attempts') target(name).attempts = Number(value);
      if (kind === 'fallbacks') target(name).fallbacks = Number(value);
    }
    for (const [field, value] of Object.entries(latency!)) if (!field.endsWith(':at')) target(field).latency_ms_per_token = fourDigits(Number(value));
    this.leaseTargets.forEach((t, i) => (target(t).in_flight = shards.reduce((n, _, k) => n + Number(replies[3 + i * shards.length + k]), 0)));
    const aliases: RoutingStats['aliases'] = new Map();
    for (const [field, value] of Object.entries(aliasCounts!)) {
      const [name, kind] = split(field);
      const a = aliases.get(name) ?? { jobs: 0, fallbacks: 0 };
      aliases.set(name, a);
      if (kind === 'jobs') a.jobs = Number(value);
      if (kind === 'fallbacks') a.fallbacks = Number(value);
    }
    return { targets, aliases };
  }
}
