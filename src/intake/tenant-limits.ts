import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import type { JobStore } from '../store/job-store.js';
import { IntakeError } from './job-intake.js';

const MINUTE_MS = 60_000;

/**
 * What each tenant's API key allows at intake: requests per minute (a Redis window shared by every
 * API process), unfinished jobs at once (counted by the job scripts), and a monthly budget in USD
 * (spend counted from the price table as jobs finish). A tenant with no limits costs nothing here.
 */
export class TenantLimits {
  private readonly redis: ScriptClient;
  private readonly limits = new Map<string, NonNullable<Config['auth']['api_keys'][number]['limits']>>();

  constructor(
    redis: Redis,
    private readonly store: JobStore,
    auth: Config['auth'],
  ) {
    this.redis = withScripts(redis);
    for (const k of auth.api_keys) if (k.limits) this.limits.set(k.name, k.limits);
  }

  /** Throws the 429 / 402 a caller should see when `jobs` more would break a limit. */
  async admit(tenant: string, jobs: number): Promise<void> {
    const limits = this.limits.get(tenant);
    if (!limits) return;
    if (limits.rpm) {
      const [ok, waitMs] = (await this.redis.windowBudget(this.store.keys.budget(`intake:${tenant}`), 1, limits.rpm, MINUTE_MS)) as [number, number];
      if (ok !== 1) {
        throw new IntakeError(429, 'rate_limit_error', `tenant ${tenant} is limited to ${limits.rpm} intake requests a minute; retry in ${Math.ceil(waitMs / 1000)} s`, null, 'tenant_rate_limited', Math.ceil(waitMs / 1000));
      }
    }
    if (limits.max_queued === undefined && limits.monthly_budget_usd === undefined) return;
    const totals = await this.store.tenantTotals(tenant);
    if (limits.max_queued !== undefined && totals.queued + jobs > limits.max_queued) {
      throw new IntakeError(429, 'rate_limit_error', `tenant ${tenant} may have ${limits.max_queued} unfinished jobs; it has ${totals.queued} and asked for ${jobs} more`, null, 'too_many_queued_jobs');
    }
    if (limits.monthly_budget_usd !== undefined && totals.month_spend_usd >= limits.monthly_budget_usd) {
      throw new IntakeError(402, 'budget_exceeded_error', `tenant ${tenant} has spent $${totals.month_spend_usd.toFixed(4)} of its $${limits.monthly_budget_usd} monthly budget`, null, 'monthly_budget_exceeded');
    }
  }
}
