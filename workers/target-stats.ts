import type { Redis } from 'ioredis';
import type { Config, HealthConfig } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import type { Metrics } from '../src/metrics.js';
import { type ScriptClient, withScripts } from '../src/redis/scripts.js';
import { fourDigits } from '../src/routing/routing-state.js';
import type { Keys } from '../src/store/keys.js';

/** How often a worker process folds what it saw into the shared routing state. */
const FLUSH_MS = 1000;
/** Histogram buckets of latency per output token: as in recordStats.lua. */
const BUCKET_BASE = 0.01;
const LOG_GROWTH = Math.log(1.25);
const MAX_BUCKET = 200;

interface TargetCounts {
  att: number;
  ok: number;
  /** Sum of ms per output token over the successes. */
  lat: number;
  fb: number;
}

interface ProviderCounts {
  n: number;
  err: number;
  h: Record<number, number>;
  cfg: [number, number, number, number, number];
}

/** One attempt as routing learns from it. */
export interface AttemptSeen {
  provider: string;
  model: string;
  /** success, or failure (the provider's fault: 5xx, timeout, reset): what health counts. Neutral ones (4xx, 429, skipped) do not. */
  health: 'success' | 'failure' | 'neutral';
  latencyMs: number;
  completionTokens?: number | undefined;
  /** The job moved on to its next target after this attempt. */
  fellBack: boolean;
  /** The alias that routed the job, and whether this was its first hop (a job counted once). */
  alias: string | null;
  firstHop: boolean;
}

/**
 * What a worker process's calls say about each target, gathered in memory and folded into Redis
 * once a second by one script (recordStats.lua): latency per output token for the `latency`
 * strategy, health windows, attempts and fallbacks per target and per alias. One round trip a
 * second whatever the job rate, instead of one per call. What a process had not flushed when it
 * died is lost; routing only steers by it, the ledger does not depend on it.
 */
export class TargetStats {
  private readonly redis: ScriptClient;
  private targets = new Map<string, TargetCounts>();
  private providers = new Map<string, ProviderCounts>();
  private aliases = new Map<string, { jobs: number; fb: number }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly config: Pick<Config, 'health' | 'providers'>,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
  ) {
    this.redis = withScripts(redis);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  /** The health settings of one provider: its own over the top-level ones. */
  healthOf(provider: string): HealthConfig {
    return { ...this.config.health, ...this.config.providers[provider]?.health };
  }

  seen(a: AttemptSeen): void {
    const target = `${a.provider}/${a.model}`;
    const t = this.targets.get(target) ?? { att: 0, ok: 0, lat: 0, fb: 0 };
    this.targets.set(target, t);
    t.att++;
    if (a.fellBack) t.fb++;
    const perToken = a.latencyMs / Math.max(1, a.completionTokens ?? 1);
    if (a.health === 'success') {
      t.ok++;
      t.lat += perToken;
    }
    if (a.health !== 'neutral') {
      let p = this.providers.get(a.provider);
      if (!p) {
        const h = this.healthOf(a.provider);
        p = { n: 0, err: 0, h: {}, cfg: [h.window_ms, h.min_requests, h.max_error_rate, h.latency_factor, h.baseline_window_ms] };
        this.providers.set(a.provider, p);
      }
      p.n++;
      if (a.health === 'failure') p.err++;
      else {
        const b = Math.min(MAX_BUCKET, Math.max(0, Math.floor(Math.log(Math.max(perToken, BUCKET_BASE) / BUCKET_BASE) / LOG_GROWTH)));
        p.h[b] = (p.h[b] ?? 0) + 1;
      }
    }
    if (a.alias) {
      const s = this.aliases.get(a.alias) ?? { jobs: 0, fb: 0 };
      this.aliases.set(a.alias, s);
      if (a.firstHop) s.jobs++;
      if (a.fellBack) s.fb++;
    }
  }

  /** One flush at a time; what arrives meanwhile waits for the next. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.send());
    return this.flushing;
  }

  private async send(): Promise<void> {
    if (this.targets.size === 0 && this.providers.size === 0 && this.aliases.size === 0) return;
    const observations = { targets: Object.fromEntries(this.targets), providers: Object.fromEntries(this.providers), aliases: Object.fromEntries(this.aliases) };
    this.targets = new Map();
    this.providers = new Map();
    this.aliases = new Map();
    let changes: (string | number)[][];
    try {
      changes = (await this.redis.recordStats(this.keys.routingLatency, this.keys.routingTargets, this.keys.routingAliases, Date.now(), this.keys.prefix, JSON.stringify(observations))) as unknown as (string | number)[][];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'routing statistics could not be recorded; routing goes on with the last ones');
      return;
    }
    for (const [provider, state, reason, requests, errorRate, p95, baseline] of changes) {
      this.metrics?.healthChanges.inc({ provider: String(provider), state: String(state) });
      const detail = {
        provider, requests: Number(requests), error_rate: fourDigits(Number(errorRate)),
        ...(p95 !== '' && { p95_ms_per_token: fourDigits(Number(p95)) }), ...(baseline !== '' && { baseline_ms_per_token: fourDigits(Number(baseline)) }),
      };
      if (state === 'degraded') this.log.warn({ ...detail, reason }, 'provider degraded: routed around while an alternative exists');
      else this.log.info(detail, 'provider healthy again');
    }
  }
}
