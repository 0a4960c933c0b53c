import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import type { Keys } from '../store/keys.js';
import type { Usage } from '../store/job-record.js';
import type { ChatRequest } from '../providers/types.js';
import { estimateTokens } from '../routing/token-estimate.js';

interface Hold {
  key: string;
  amount: number;
  tokens: boolean;
  windowMs: number;
}

export type Reservation = { ok: true; holds: Hold[] } | { ok: false; scope: 'provider' | 'model'; waitMs: number };

/**
 * Token-per-minute budgets (per provider and per model) and per-model request limits, in Redis
 * fixed windows shared by every process. Provider-wide requests per minute are BullMQ's queue
 * limiter's job, not this class's.
 */
export class RateBudgets {
  private readonly redis: ScriptClient;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly config: Pick<Config, 'providers'>,
  ) {
    this.redis = withScripts(redis);
  }

  /** True when nothing is configured for this target, so callers can skip the whole dance. */
  isUnlimited(provider: string, model: string): boolean {
    const p = this.config.providers[provider];
    return !p?.tpm && !p?.models?.[model];
  }

  async reserve(provider: string, model: string, request: ChatRequest): Promise<Reservation> {
    const p = this.config.providers[provider];
    if (!p) return { ok: true, holds: [] };
    const window = p.rate_window_ms;
    const tokens = estimateTokens(request);
    const wanted: (Omit<Hold, 'windowMs'> & { limit: number; scope: 'provider' | 'model' })[] = [];
    if (p.tpm) wanted.push({ key: this.keys.budget(`tpm:${provider}`), amount: tokens, limit: p.tpm, tokens: true, scope: 'provider' });
    const m = p.models?.[model];
    if (m?.rpm) wanted.push({ key: this.keys.budget(`rpm:${provider}:${model}`), amount: 1, limit: m.rpm, tokens: false, scope: 'model' });
    if (m?.tpm) wanted.push({ key: this.keys.budget(`tpm:${provider}:${model}`), amount: tokens, limit: m.tpm, tokens: true, scope: 'model' });
    const holds: Hold[] = [];
    for (const w of wanted) {
      const [ok, waitMs] = (await this.redis.windowBudget(w.key, w.amount, w.limit, window, 'reserve')) as [number, number, number];
      if (ok !== 1) {
        await this.release({ ok: true, holds });
        return { ok: false, scope: w.scope, waitMs: Math.max(1, Number(waitMs)) };
      }
      holds.push({ key: w.key, amount: w.amount, tokens: w.tokens, windowMs: window });
    }
    return { ok: true, holds };
  }

  /**
   * Replaces the token estimate with what the provider reported (or returns it all when the call
   * failed): a call that used more than its reservation is charged the rest, past the limit if it
   * must be, so the window counts what was really used and the next calls wait for it.
   */
  async settle(reservation: Reservation, usage: Usage | null): Promise<void> {
    if (!reservation.ok) return;
    await Promise.all(
      reservation.holds
        .filter((h) => h.tokens)
        .map((h) => {
          const delta = (usage ? usage.total_tokens : 0) - h.amount;
          return delta === 0 ? undefined : this.redis.windowBudget(h.key, delta, 0, h.windowMs, 'adjust');
        }),
    );
  }

  /** Gives back everything reserved: the call never happened. */
  async release(reservation: Reservation): Promise<void> {
    if (!reservation.ok) return;
    await Promise.all(reservation.holds.map((h) => this.redis.windowBudget(h.key, -h.amount, 0, h.windowMs, 'adjust')));
  }

  /** Current use, for GET /v1/providers. */
  async tokensUsed(provider: string): Promise<number> {
    return Number((await this.redis.get(this.keys.budget(`tpm:${provider}`))) ?? 0);
  }
}
