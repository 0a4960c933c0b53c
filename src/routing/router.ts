import type { AliasConfig, Config, Strategy as StrategyName } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import type { ContextWindows } from '../providers/context-windows.js';
import type { Pricing } from '../providers/pricing.js';
import type { ChatRequest } from '../providers/types.js';
import { type RoutingCandidate, type RoutingRecord, splitTarget } from '../store/job-record.js';
import type { Keys } from '../store/keys.js';
import type { Affinity } from './affinity.js';
import type { RoutingBudgets } from './budgets.js';
import { fourDigits, type RoutingState } from './routing-state.js';
import { firstMatch } from './rules.js';
import { type Candidate, STRATEGY } from './strategies/index.js';
import { completionBudget, estimatePromptTokens } from './token-estimate.js';

/** A job the router cannot place; the intake answers with `status` naming `param`. */
export class RouteError extends Error {
  constructor(
    message: string,
    readonly param: 'task' | 'model' | 'request',
    readonly status: 400 | 402 = 400,
    readonly code = 'unknown_route',
    readonly type = 'invalid_request_error',
  ) {
    super(message);
  }
}

/** What routing looks at in a job. */
export interface RouteInput {
  task?: string | undefined;
  model?: string | undefined;
  metadata?: Record<string, string> | undefined;
  priority?: number | undefined;
  request: ChatRequest;
}

export interface Route {
  /** Every target worth calling, best first: the job falls back along it. */
  chain: string[];
  routing: RoutingRecord;
  /** The alias whose monthly budget the job's spend counts against. */
  budgetAlias?: string;
  /** The least-busy lease zset of the first target. */
  lease?: string;
  /** "<key> <ttl s>" for a success to record the target its prompt prefix is now cached at. */
  affinity?: string;
}

export interface RouterDeps {
  windows: ContextWindows;
  pricing: Pricing;
  state?: RoutingState;
  breakers?: { isUnavailable(provider: string): boolean; view(provider: string): { throttledUntil: number } };
  budgets?: RoutingBudgets;
  affinity?: Affinity;
  keys?: Keys;
  metrics?: Metrics;
  random?: () => number;
}

export interface RouteOptions {
  /** A batch's line: the batch was admitted as a whole, so an alias budget spent since does not refuse it (it still downgrades). */
  admitted?: boolean;
}

/** What a job's model or task names, once rules and budgets have had their say. */
type Named = { name: string; param: 'task' | 'model' } | { chain: string[]; param: 'task' };

const NO_STATE = {
  busy: () => 0,
  latencyPerToken: () => undefined,
  headroom: () => 1,
  health: () => ({ state: 'healthy' as const }),
};

/**
 * Turns a job's `task` / `model` into its chain (DESIGN section 8): task rules pick a model; budgets
 * may downgrade it to a cheaper alias or refuse it; targets whose context window the request does
 * not fit are left out uncalled; each tier is ordered by the alias's strategy, tiers in order;
 * targets of a degraded provider, an open breaker or a provider that asked for a pause go after
 * every healthy one (never removed: a job may still reach them last); affinity may bring the
 * target that last served the prompt's prefix to the front of its tier. The decision is returned as
 * the job's `routing` record. Shared state comes from the RoutingState snapshot, so routing makes
 * no Redis round trip (affinity aside, one GET when it is on and not remembered).
 */
export class Router {
  private readonly random: () => number;

  constructor(
    private readonly config: Pick<Config, 'models' | 'tasks' | 'providers' | 'routing'>,
    private readonly deps: RouterDeps,
  ) {
    this.random = deps.random ?? Math.random;
  }

  /**
   * The targets a job could go to, in config order, unranked, after every check that could refuse
   * it (rules, budgets, context windows): for validating a batch's lines and bounding their spend.
   */
  resolve(input: RouteInput, tenant: string, opts: RouteOptions = {}): string[] {
    return this.plan(input, tenant, opts).fitting.map((c) => c.target);
  }

  async route(input: RouteInput, tenant: string, opts: RouteOptions = {}): Promise<Route> {
    const { promptTokens, completionTokens, rule, downgraded, alias, aliasName, strategy, targets, records, fitting } = this.plan(input, tenant, opts);
    // Exploring, a degraded provider keeps its place (the probes that show it has recovered) and a
    // latency tier goes in weighted random order, so a target it would never pick is measured
    // again. The other strategies' figures stay fresh by themselves (leases, limits) or are fixed (prices).
    const exploring = this.random() < this.config.routing.explore;
    const shuffled = exploring && strategy === 'latency';
    let explored = shuffled;
    const state = this.deps.state ?? NO_STATE;
    const ctx = { state: state as RoutingState, pricing: this.deps.pricing, promptTokens, completionTokens, random: this.random };
    const healthy: Candidate[] = [];
    const degraded: Candidate[] = [];
    const unavailable: Candidate[] = [];
    for (const tier of [...new Set(fitting.map((c) => c.tier))].sort((a, b) => a - b)) {
      const members = fitting.filter((c) => c.tier === tier);
      const ranked = shuffled ? STRATEGY.weighted(members, ctx) : STRATEGY[strategy](members, ctx);
      for (const c of ranked) {
        const record = records.get(c.target)!;
        if (c.score !== undefined && Number.isFinite(c.score)) record.score = fourDigits(c.score);
        if (this.deps.breakers?.isUnavailable(c.provider)) {
          record.demoted = this.deps.breakers.view(c.provider).throttledUntil > Date.now() ? 'throttled' : 'circuit_open';
          unavailable.push(c);
        } else if (state.health(c.provider).state === 'degraded' && !exploring) {
          record.demoted = 'degraded';
          degraded.push(c);
        } else {
          if (exploring && state.health(c.provider).state === 'degraded') explored = true;
          healthy.push(c);
        }
      }
    }

    let affinity: Route['affinity'];
    let affinityOutcome: RoutingRecord['affinity'];
    if (alias?.affinity && aliasName && this.deps.affinity) {
      const key = this.deps.affinity.keyOf(aliasName, input.request, alias.affinity.min_prefix_chars, tenant);
      if (key) {
        affinity = `${key} ${alias.affinity.ttl_s}`;
        const sticky = await this.deps.affinity.lookup(key);
        const at = sticky === null ? -1 : healthy.findIndex((c) => c.target === sticky);
        affinityOutcome = sticky === null ? 'miss' : at < 0 ? 'lost' : 'hit';
        if (at > 0) {
          // To the front of its own tier: a lower tier still goes first while it is healthy.
          const [chosen] = healthy.splice(at, 1);
          healthy.splice(healthy.findIndex((c) => c.tier === chosen!.tier), 0, chosen!);
        }
      }
    }

    const chain = [...healthy, ...degraded, ...unavailable].map((c) => c.target);
    chain.forEach((target, position) => (records.get(target)!.position = position));
    const routing: RoutingRecord = {
      alias: aliasName,
      strategy,
      ...(rule !== undefined && { rule }),
      input_tokens: promptTokens,
      ...(downgraded && { downgraded }),
      ...(explored && { explored: true }),
      ...(affinityOutcome && { affinity: affinityOutcome }),
      candidates: targets.map((c) => records.get(c.target)!),
    };
    this.observe(routing, chain[0]!);
    const route: Route = { chain, routing };
    if (alias?.monthly_budget_usd !== undefined && aliasName) route.budgetAlias = aliasName;
    if (affinity) route.affinity = affinity;
    if (strategy === 'least_busy' && this.deps.keys) {
      route.lease = this.deps.keys.inflight(chain[0]!, this.deps.keys.tenantShard(tenant));
      this.deps.state?.routed(chain[0]!);
    }
    return route;
  }

  /** Rules, budgets and context windows: what the job may go to, or the RouteError that refuses it. */
  private plan(input: RouteInput, tenant: string, opts: RouteOptions) {
    const promptTokens = estimatePromptTokens(input.request);
    const completionTokens = completionBudget(input.request);
    let { named, rule } = this.pick(input, promptTokens);
    let downgraded: RoutingRecord['downgraded'];
    const tenantVerdict = this.deps.budgets?.tenant(tenant);
    if (tenantVerdict?.kind === 'downgrade' && !('name' in named && named.name === tenantVerdict.to)) {
      downgraded = { from: 'name' in named ? named.name : named.chain.join(','), reason: 'tenant_budget', share: fourDigits(tenantVerdict.share) };
      named = { name: tenantVerdict.to, param: named.param };
    }
    // The schema refuses downgrade loops; the bound is for safety only.
    for (let step = 0; 'name' in named && this.aliasOf(named.name) && step < 16; step++) {
      const verdict = this.deps.budgets?.alias(named.name);
      if (verdict?.kind === 'exhausted' && !opts.admitted) {
        throw new RouteError(
          `the alias "${named.name}" has spent its $${verdict.budgetUsd} monthly budget (${Math.round(verdict.share * 100)}%); its jobs are refused until the month ends`,
          named.param, 402, 'alias_budget_exceeded', 'budget_exceeded_error',
        );
      }
      if (verdict?.kind !== 'downgrade') break;
      downgraded = { from: downgraded?.from ?? named.name, reason: downgraded?.reason ?? 'alias_budget', share: fourDigits(verdict.share) };
      named = { name: verdict.to, param: named.param };
    }
    const { alias, aliasName, strategy, targets } = 'chain' in named
      ? { alias: undefined, aliasName: null, strategy: 'ordered' as StrategyName, targets: named.chain.map((target) => candidate(target, 1, 1)) }
      : { ...this.expand(named), aliasName: this.aliasOf(named.name) ? named.name : null };

    const records = new Map<string, RoutingCandidate>();
    const fitting: Candidate[] = [];
    for (const c of targets) {
      const window = this.deps.windows.windowOf(c.provider, c.model);
      const record: RoutingCandidate = { target: c.target, tier: c.tier, ...(window !== null && { context_window: window }) };
      records.set(c.target, record);
      if (window !== null && promptTokens + completionTokens > window) record.skipped = 'context_window';
      else fitting.push(c);
    }
    if (fitting.length === 0) {
      const sizes = targets.map((c) => `${c.target} (${records.get(c.target)!.context_window})`).join(', ');
      throw new RouteError(
        `the request needs about ${promptTokens} prompt tokens plus ${completionTokens} for the answer, more than the context window of every target: ${sizes}`,
        'request', 400, 'context_length_exceeded',
      );
    }
    return { promptTokens, completionTokens, rule, downgraded, alias, aliasName, strategy, targets, records, fitting };
  }

  /** The job's model, or its task's first matching rule's. */
  private pick(input: RouteInput, promptTokens: number): { named: Named; rule?: number } {
    if (input.model !== undefined) return { named: { name: input.model, param: 'model' } };
    const task = input.task ?? 'default';
    // Own keys only: a task named "constructor" or "__proto__" is unknown, not Object's.
    const rules = Object.hasOwn(this.config.tasks, task) ? this.config.tasks[task] : undefined;
    if (rules === undefined) {
      throw new RouteError(`unknown task "${task}"; configured tasks: ${Object.keys(this.config.tasks).join(', ')}`, 'task');
    }
    const index = firstMatch(rules, { inputTokens: promptTokens, metadata: input.metadata ?? {}, priority: input.priority ?? 5 });
    if (index < 0) throw new RouteError(`no rule of task "${task}" matches this job (about ${promptTokens} prompt tokens); give the task a last rule without "when"`, 'task', 400, 'no_matching_rule');
    const { model } = rules[index]!;
    const hasRules = rules.length > 1 || rules[0]!.when !== undefined;
    return { named: typeof model === 'string' ? { name: model, param: 'task' } : { chain: model, param: 'task' }, ...(hasRules && { rule: index }) };
  }

  private aliasOf(name: string): AliasConfig | undefined {
    return Object.hasOwn(this.config.models, name) ? this.config.models[name] : undefined;
  }

  /** An alias's targets, or the one `provider/model` a name spells. */
  private expand(named: { name: string; param: 'task' | 'model' }): { alias?: AliasConfig; strategy: StrategyName; targets: Candidate[] } {
    const alias = this.aliasOf(named.name);
    if (alias) return { alias, strategy: alias.strategy, targets: alias.targets.map((t) => candidate(t.target, t.tier, t.weight)) };
    const slash = named.name.indexOf('/');
    if (slash > 0 && slash < named.name.length - 1) {
      const provider = named.name.slice(0, slash);
      if (Object.hasOwn(this.config.providers, provider)) return { strategy: 'ordered', targets: [candidate(named.name, 1, 1)] };
      throw new RouteError(`unknown provider "${provider}" in model "${named.name}"`, named.param);
    }
    throw new RouteError(`unknown model "${named.name}": use an alias (${Object.keys(this.config.models).join(', ')}) or "provider/model"`, named.param);
  }

  private observe(routing: RoutingRecord, first: string): void {
    const m = this.deps.metrics;
    if (!m) return;
    m.routed.inc({ alias: routing.alias ?? '', strategy: routing.strategy, target: first });
    for (const c of routing.candidates) {
      const reason = c.skipped ?? c.demoted;
      if (reason) m.routingSkips.inc({ target: c.target, reason });
    }
    if (routing.downgraded) m.downgrades.inc({ from: routing.downgraded.from, to: routing.alias ?? '', reason: routing.downgraded.reason });
  }
}

function candidate(target: string, tier: number, weight: number): Candidate {
  const { provider, model } = splitTarget(target);
  return { target, provider, model, tier, weight };
}

