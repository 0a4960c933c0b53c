import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { Pricing } from '../providers/pricing.js';
import type { ChatRequest } from '../providers/types.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import { completionBudget, estimatePromptTokens } from '../routing/token-estimate.js';
import { splitTarget } from '../store/job-record.js';
import { monthOf } from '../store/job-store.js';
import type { Keys } from '../store/keys.js';
import { IntakeError } from './intake-error.js';

const MINUTE_MS = 60_000;
/** A request writes its jobs within this; a lease left by a process that died frees its room then. */
const REQUEST_LEASE_MS = 60_000;

type TenantLimitsConfig = NonNullable<Config['auth']['api_keys'][number]['limits']>;

export interface AdmitRequest {
  jobs: number;
  /** Estimated spend of those jobs, 1e-10 USD (see `estimate`). */
  estimateE10: number;
  /** Adds to this lease instead of opening a new one (a batch's lines after its admission). */
  lease?: string;
  /** How long the lease may live; a batch's lasts its completion window. */
  leaseMs?: number;
  /** Counts against the tenant's requests per minute (a batch's later top-up does not). */
  countRequest?: boolean;
}

const usd = (e10: number) => `$${(e10 / 1e10).toFixed(4)}`;

/**
 * What each tenant's API key allows: intake requests per minute, unfinished jobs at once, and a
 * monthly budget in USD. Every path that creates work (jobs, bulk, batches) is admitted here, in
 * one Lua step (admitJobs) that checks and takes room together, so concurrent requests cannot
 * overshoot a limit. A budget is held against as jobs are admitted, from each job's estimated
 * spend (its prompt estimate and max tokens at the dearest target of its chain), and released for
 * what the job really cost when it ends. A tenant with no limits costs nothing here.
 */
export class TenantLimits {
  private readonly redis: ScriptClient;
  private readonly limits = new Map<string, TenantLimitsConfig>();

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    auth: Config['auth'],
    private readonly pricing: Pricing,
  ) {
    this.redis = withScripts(redis);
    for (const k of auth.api_keys) if (k.limits) this.limits.set(k.name, k.limits);
  }

  private budgeted(tenant: string): boolean {
    return this.limits.get(tenant)?.monthly_budget_usd !== undefined;
  }

  /**
   * What a job may cost at most, as far as can be told before it runs, for a tenant with a budget
   * (0 otherwise). A budget cannot be held against a model with no price, so such a chain is refused.
   */
  estimate(tenant: string, chain: string[], request: ChatRequest, promptTokens?: number): number {
    if (!this.budgeted(tenant)) return 0;
    // Counted once per job: routing's own estimate when it has one.
    const prompt = promptTokens ?? estimatePromptTokens(request);
    const completion = completionBudget(request);
    let dearest = 0;
    for (const ref of chain) {
      const { provider, model } = splitTarget(ref);
      const price = this.pricing.priceOf(provider, model);
      if (!price) {
        throw new IntakeError(400, 'invalid_request_error', `${ref} has no price in the price table, and tenant ${tenant} has a monthly budget that cannot count it; add it under pricing: in the configuration`, 'model', 'unpriced_model');
      }
      dearest = Math.max(dearest, prompt * price.input + completion * price.output);
    }
    // Prices are per million tokens: USD = tokens × price / 1e6, kept in 1e-10 USD.
    return Math.ceil(dearest * 1e4);
  }

  /**
   * Admits `jobs` more jobs for `tenant`, or throws the 429 / 402 its caller should see. Returns the
   * lease the jobs are to be created under (null when the tenant has no limit that needs one).
   */
  async admit(tenant: string, req: AdmitRequest): Promise<string | null> {
    const limits = this.limits.get(tenant);
    if (!limits) return null;
    const holds = limits.max_queued !== undefined || limits.monthly_budget_usd !== undefined;
    const lease = req.lease ?? (holds ? randomBytes(9).toString('base64url') : '');
    const now = Date.now();
    const reply = (await this.redis.admitJobs(
      this.keys.tenant(tenant), this.keys.tenantLeases(tenant), this.keys.tenantLeaseSizes(tenant), this.keys.tenantWindow(tenant),
      now, lease, req.jobs, req.estimateE10, monthOf(now),
      limits.max_queued ?? '', limits.monthly_budget_usd === undefined ? '' : Math.round(limits.monthly_budget_usd * 1e10),
      limits.rpm ?? '', MINUTE_MS, req.leaseMs ?? REQUEST_LEASE_MS, req.countRequest === false ? 0 : 1,
    )) as (string | number)[];
    const n = reply.slice(1).map(Number);
    switch (reply[0]) {
      case 'ok':
        return holds ? lease : null;
      case 'rpm': {
        const wait = Math.max(1, Math.ceil(n[0]! / 1000));
        throw new IntakeError(429, 'rate_limit_error', `tenant ${tenant} is limited to ${limits.rpm} intake requests a minute; retry in ${wait} s`, null, 'tenant_rate_limited', wait);
      }
      case 'queued': {
        const [queued, held, asked] = n as [number, number, number];
        const holding = held > 0 ? ` (and ${held} being admitted)` : '';
        throw new IntakeError(429, 'rate_limit_error', `tenant ${tenant} may have ${limits.max_queued} unfinished jobs; it has ${queued}${holding} and asked for ${asked} more`, null, 'too_many_queued_jobs', 1);
      }
      default: {
        const [spent, reserved, held, estimate] = n as [number, number, number, number];
        const budget = Math.round(limits.monthly_budget_usd! * 1e10);
        const message =
          spent >= budget
            ? `tenant ${tenant} has spent ${usd(spent)} of its $${limits.monthly_budget_usd} monthly budget`
            : `tenant ${tenant} has spent ${usd(spent)} and holds ${usd(reserved + held)} for unfinished jobs of its $${limits.monthly_budget_usd} monthly budget; these jobs could cost up to ${usd(estimate)} more`;
        throw new IntakeError(402, 'budget_exceeded_error', message, null, 'monthly_budget_exceeded');
      }
    }
  }

  /** Gives back what a lease still holds: its request ended without creating every job it was admitted for. */
  async release(tenant: string, lease: string): Promise<void> {
    await this.redis.multi().zrem(this.keys.tenantLeases(tenant), lease).hdel(this.keys.tenantLeaseSizes(tenant), lease).exec();
  }
}
