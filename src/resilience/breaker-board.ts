import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import type { Keys } from '../store/keys.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerView {
  state: BreakerState;
  /** Proven by a success since the last failure; only then do calls skip Redis entirely. */
  healthy: boolean;
  /** Until when it stays open, or when the half-open probe's lease runs out (ms). */
  until: number;
  failures: number;
  /** After a 429: no calls until then (ms). */
  throttledUntil: number;
}

/** How a call was admitted; hand it back to `record`. */
export type Ticket = 'free' | 'trial' | 'probe';

export type Admission =
  /** `token` names a trial's lease, to give back with `record`. */
  | { kind: 'call'; ticket: Ticket; token?: string }
  /** Unproven and every trial slot is taken: try again shortly. */
  | { kind: 'wait' }
  | { kind: 'open'; until: number }
  /** The provider asked us (429) to hold off until then. */
  | { kind: 'throttled'; until: number };

export type CallOutcome = 'success' | 'failure' | 'throttled' | 'neutral';

const CLOSED: BreakerView = { state: 'closed', healthy: false, until: 0, failures: 0, throttledUntil: 0 };

const REFRESH_MS = 1000;

/**
 * The circuit breakers of every provider, shared by all processes through Redis.
 *
 * closed → open after `failure_threshold` consecutive failures → after `cooldown_ms`, half-open
 * with exactly one probe (a lease in Redis) → closed on success, open again on failure.
 *
 * A provider is "proven" once a call succeeds. While proven and closed, calls are admitted from the
 * local view with no Redis round trip, which keeps the hot path free. After any failure (and for a
 * provider never seen working) calls go through Redis and at most `failure_threshold` are in flight
 * at once, so a provider that has just gone down receives no more than the threshold of calls
 * before the breaker opens. Transitions are published so every process switches at once; the local
 * view is also re-read every second in case a message was missed.
 */
export class BreakerBoard {
  private readonly views = new Map<string, BreakerView>();
  private readonly redis: ScriptClient;
  private timer: NodeJS.Timeout | undefined;
  /** With one tenant (or none: dev mode) there is nobody to protect from a tenant's own timeouts. */
  private readonly sharedByTenants: boolean;

  constructor(
    redis: Redis,
    private readonly subscriber: Redis,
    private readonly keys: Keys,
    private readonly config: Pick<Config, 'breaker' | 'providers'> & { auth?: Pick<Config['auth'], 'api_keys'> },
    private readonly log: Logger,
  ) {
    this.redis = withScripts(redis);
    this.sharedByTenants = (config.auth?.api_keys.length ?? 0) > 1;
    for (const name of Object.keys(config.providers)) this.views.set(name, { ...CLOSED });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.breakerEvents) this.apply(message);
    });
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(this.keys.breakerEvents);
    await this.refresh();
    this.timer = setInterval(() => void this.refresh().catch(() => {}), REFRESH_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.subscriber.disconnect();
  }

  view(provider: string): BreakerView {
    return this.views.get(provider) ?? { ...CLOSED };
  }

  /** For routing: skip a provider whose breaker is open and not yet due a probe, or that asked (429) for a pause. */
  isUnavailable(provider: string, now = Date.now()): boolean {
    const v = this.view(provider);
    return (v.state !== 'closed' && now < v.until) || now < v.throttledUntil;
  }

  async admit(provider: string, now = Date.now()): Promise<Admission> {
    const v = this.view(provider);
    if (now < v.throttledUntil) return { kind: 'throttled', until: v.throttledUntil };
    if (v.state === 'closed' && v.healthy) return { kind: 'call', ticket: 'free' };
    if (v.state !== 'closed' && now < v.until) return { kind: 'open', until: v.until };
    const token = randomBytes(8).toString('hex');
    const [verdict, state, until] = (await this.redis.breakerAcquire(
      this.keys.breaker(provider), this.keys.breakerTrials(provider), now, this.config.breaker.failure_threshold, this.probeLease(provider),
      this.keys.breakerEvents, provider, token,
    )) as [string, BreakerState, number];
    if (verdict !== 'throttled') this.update(provider, { state, until: Number(until), ...(verdict === 'free' && { healthy: true }) });
    if (verdict === 'wait') return { kind: 'wait' };
    if (verdict === 'open') return { kind: 'open', until: Number(until) };
    if (verdict === 'throttled') {
      this.update(provider, { throttledUntil: Number(until), healthy: false });
      return { kind: 'throttled', until: Number(until) };
    }
    return { kind: 'call', ticket: verdict as Ticket, ...(verdict === 'trial' && { token }) };
  }

  /**
   * `throttledUntil` goes with a 429: until when the provider asked us to hold off. `blame` names
   * the tenant of a failure its own request could have caused (a timeout): held apart until
   * another tenant's call corroborates it, so one tenant cannot open a shared breaker alone.
   */
  async record(provider: string, ticket: Ticket, outcome: CallOutcome, opts: { throttledUntil?: number; token?: string; blame?: string; now?: number } = {}): Promise<void> {
    // The common case, a proven provider answering well, writes nothing.
    if (ticket === 'free' && (outcome === 'success' || outcome === 'neutral')) return;
    const before = this.view(provider).state;
    const throttledUntil = opts.throttledUntil ?? 0;
    const [state, until, failures, healthy] = (await this.redis.breakerRecord(
      this.keys.breaker(provider), this.keys.breakerTrials(provider), opts.now ?? Date.now(), this.config.breaker.failure_threshold, this.config.breaker.cooldown_ms,
      this.keys.breakerEvents, provider, outcome, ticket, throttledUntil, opts.token ?? '', opts.blame ?? '', this.sharedByTenants ? 1 : 0,
    )) as [BreakerState, number, number, number];
    if (outcome === 'throttled') {
      this.update(provider, { healthy: false, throttledUntil });
      return;
    }
    this.update(provider, { state, until: Number(until), failures: Number(failures), healthy: Number(healthy) === 1, ...(outcome === 'success' && { throttledUntil: 0 }) });
    if (state !== before) {
      const level = state === 'open' ? 'warn' : 'info';
      this.log[level]({ provider, breaker: state, from: before, failures: Number(failures), ...(state === 'open' && { until: new Date(Number(until)).toISOString() }) }, 'circuit breaker transition');
    }
  }

  snapshot(): Record<string, BreakerView> {
    return Object.fromEntries(this.views);
  }

  /** A probe's or trial's lease outlives its call (timeout plus a margin), so a lost one cannot block forever. */
  private probeLease(provider: string): number {
    const timeout = this.config.providers[provider]?.timeout_ms ?? 60_000;
    return timeout + Math.min(5_000, timeout);
  }

  private update(provider: string, patch: Partial<BreakerView>): void {
    this.views.set(provider, { ...this.view(provider), ...patch });
  }

  /** "<provider> <closed|open|half_open|suspect> <until>" from another process. */
  private apply(message: string): void {
    const [provider, event, until] = message.split(' ');
    if (!provider || !this.views.has(provider)) return;
    if (event === 'suspect') this.update(provider, { healthy: false });
    else if (event === 'throttled') this.update(provider, { healthy: false, throttledUntil: Number(until) });
    else if (event === 'closed') this.update(provider, { state: 'closed', healthy: true, until: 0, failures: 0, throttledUntil: 0 });
    else if (event === 'open' || event === 'half_open') this.update(provider, { state: event, healthy: false, until: Number(until) });
  }

  private async refresh(): Promise<void> {
    const names = [...this.views.keys()];
    const pipeline = this.redis.pipeline();
    for (const name of names) pipeline.hmget(this.keys.breaker(name), 'state', 'healthy', 'open_until', 'probe_until', 'failures', 'throttled_until');
    const replies = (await pipeline.exec()) ?? [];
    names.forEach((name, i) => {
      const [err, values] = replies[i] ?? [];
      if (err || !values) return;
      const [state, healthy, openUntil, probeUntil, failures, throttledUntil] = values as (string | null)[];
      const s = (state ?? 'closed') as BreakerState;
      this.views.set(name, {
        state: s,
        healthy: healthy === '1',
        until: Number((s === 'half_open' ? probeUntil : openUntil) ?? 0),
        failures: Number(failures ?? 0),
        throttledUntil: Number(throttledUntil ?? 0),
      });
    });
  }
}
