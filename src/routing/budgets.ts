import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { monthOf } from '../store/job-store.js';
import type { Keys } from '../store/keys.js';
import type { RoutingState } from './routing-state.js';

export type BudgetVerdict =
  | { kind: 'ok' }
  | { kind: 'downgrade'; to: string; share: number }
  | { kind: 'exhausted'; share: number; budgetUsd: number };

type Budget = { monthly_budget_usd?: number | undefined; downgrade_at?: number | undefined; downgrade_to?: string | undefined };

/** How long a crossing's marker lives: past the end of any month it was set in. */
const CROSSING_TTL_S = 40 * 24 * 3600;

/**
 * Budgets that steer routing (DESIGN section 8): past `downgrade_at` of a tenant's or an alias's
 * monthly budget, jobs go to `downgrade_to`; at 100% of an alias's budget they are refused (a
 * tenant's own 100% is refused at admission, in admitJobs). Spend is the routing state's last read
 * (at most `routing.state_refresh_ms` old), counted with each attempt in countAttempt.lua. Each
 * crossing is logged and counted once a month, by whichever process sees it first.
 */
export class RoutingBudgets {
  private readonly noted = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly config: Pick<Config, 'models' | 'auth'>,
    private readonly state: RoutingState,
    private readonly log?: Logger,
    private readonly metrics?: Metrics,
  ) {}

  tenant(name: string): BudgetVerdict {
    const limits = this.config.auth.api_keys.find((k) => k.name === name)?.limits;
    // A tenant's 100% is admitJobs's 402; here only its downgrade.
    const verdict = limits ? this.judge(`tenant:${name}`, limits) : { kind: 'ok' as const };
    return verdict.kind === 'exhausted' ? { kind: 'ok' } : verdict;
  }

  alias(name: string): BudgetVerdict {
    const alias = Object.hasOwn(this.config.models, name) ? this.config.models[name] : undefined;
    return alias ? this.judge(`alias:${name}`, alias) : { kind: 'ok' };
  }

  private judge(scope: `alias:${string}` | `tenant:${string}`, b: Budget): BudgetVerdict {
    if (b.monthly_budget_usd === undefined) return { kind: 'ok' };
    const share = this.state.spendOf(scope) / (b.monthly_budget_usd * 1e10);
    if (share >= 1) {
      this.crossed(scope, 'exhausted', share, b);
      return { kind: 'exhausted', share, budgetUsd: b.monthly_budget_usd };
    }
    if (b.downgrade_at !== undefined && b.downgrade_to !== undefined && share >= b.downgrade_at) {
      this.crossed(scope, 'downgrade', share, b);
      return { kind: 'downgrade', to: b.downgrade_to, share };
    }
    return { kind: 'ok' };
  }

  /** The first process to SET the month's marker logs the crossing; the others only remember it. */
  private crossed(scope: string, level: 'downgrade' | 'exhausted', share: number, b: Budget): void {
    const month = monthOf(Date.now());
    const key = this.keys.budgetCrossing(scope, month, level);
    if (this.noted.has(key)) return;
    this.noted.add(key);
    void this.redis
      .set(key, String(Date.now()), 'EX', CROSSING_TTL_S, 'NX')
      .then((won) => {
        if (won !== 'OK') return;
        const [kind, name] = [scope.slice(0, scope.indexOf(':')), scope.slice(scope.indexOf(':') + 1)];
        this.metrics?.budgetCrossings.inc({ scope: kind, level });
        this.log?.warn(
          { [kind]: name, month, share: Math.round(share * 1000) / 1000, monthly_budget_usd: b.monthly_budget_usd, ...(level === 'downgrade' && { downgrade_to: b.downgrade_to }) },
          level === 'downgrade' ? 'budget passed its downgrade threshold: jobs now route to the cheaper alias' : 'budget spent: its jobs are refused until the month ends',
        );
      })
      .catch(() => this.noted.delete(key));
  }
}
