import { describe, expect, it } from 'vitest';
import { Pricing } from '../src/providers/pricing.js';
import type { RoutingState } from '../src/routing/routing-state.js';
import { type Candidate, type RankContext, STRATEGY } from '../src/routing/strategies/index.js';
import { splitTarget } from '../src/store/job-record.js';

/** The strategies are pure rankings over the routing state's snapshot; here the snapshot is given outright. */
const candidate = (target: string, weight = 1): Candidate => ({ target, ...splitTarget(target), tier: 1, weight });

function context(state: Partial<Record<'busy' | 'latency' | 'headroom', Record<string, number>>>, extra: Partial<RankContext> = {}): RankContext {
  const snapshot = {
    busy: (t: string) => state.busy?.[t] ?? 0,
    latencyPerToken: (t: string) => state.latency?.[t],
    headroom: (p: string, m: string) => state.headroom?.[`${p}/${m}`] ?? 1,
    health: () => ({ state: 'healthy' }),
  } as unknown as RoutingState;
  return { state: snapshot, pricing: new Pricing({ 'a/m': { input: 1, output: 1 }, 'b/m': { input: 0.1, output: 10 } }), promptTokens: 1000, completionTokens: 100, random: Math.random, ...extra };
}
const order = (ranked: Candidate[]) => ranked.map((c) => c.target);

describe('routing strategies', () => {
  it('cost: the cheapest for this request\'s own estimate first, unpriced last', () => {
    const tier = [candidate('a/m'), candidate('b/m'), candidate('c/unpriced')];
    // A long prompt and a short answer: b's cheap input wins (2,000 µ$ against 10,100).
    expect(order(STRATEGY.cost(tier, context({}, { promptTokens: 10_000, completionTokens: 100 })))).toEqual(['b/m', 'a/m', 'c/unpriced']);
    // A short prompt and a long answer: b's dear output loses (100,010 µ$ against 10,100).
    expect(order(STRATEGY.cost(tier, context({}, { promptTokens: 100, completionTokens: 10_000 })))).toEqual(['a/m', 'b/m', 'c/unpriced']);
    const scored = STRATEGY.cost(tier, context({}, { promptTokens: 10_000, completionTokens: 100 }));
    expect(scored[0]!.score).toBeCloseTo((10_000 * 0.1 + 100 * 10) / 1e6, 12);
  });

  it('usage: the most rpm/tpm headroom first', () => {
    const tier = [candidate('a/m'), candidate('b/m'), candidate('c/m')];
    expect(order(STRATEGY.usage(tier, context({ headroom: { 'a/m': 0.1, 'b/m': 0.9, 'c/m': 0.5 } })))).toEqual(['b/m', 'c/m', 'a/m']);
  });

  it('least_busy: fewest assigned per unit of weight first', () => {
    const tier = [candidate('a/m', 1), candidate('b/m', 3)];
    // a has 2 of weight 1 (2 a unit), b 5 of weight 3 (1.67 a unit).
    expect(order(STRATEGY.least_busy(tier, context({ busy: { 'a/m': 2, 'b/m': 5 } })))).toEqual(['b/m', 'a/m']);
  });

  it('latency: an unmeasured target first, then the lowest ms per token', () => {
    const tier = [candidate('a/m'), candidate('b/m'), candidate('c/m')];
    expect(order(STRATEGY.latency(tier, context({ latency: { 'a/m': 8, 'c/m': 0.5 } })))).toEqual(['b/m', 'c/m', 'a/m']);
  });

  it('ties go by weight at random, not to the first listed', () => {
    const tier = [candidate('a/m', 1), candidate('b/m', 3)];
    const firsts = { 'a/m': 0, 'b/m': 0 } as Record<string, number>;
    for (let i = 0; i < 4000; i++) firsts[STRATEGY.usage(tier, context({}))[0]!.target]!++;
    expect(firsts['b/m']! / 4000).toBeGreaterThan(0.7);
    expect(firsts['b/m']! / 4000).toBeLessThan(0.8);
  });

  it('weighted: a random order by weight, every target in it; ordered keeps the config order', () => {
    const tier = [candidate('a/m', 1), candidate('b/m', 1), candidate('c/m', 2)];
    const ranked = STRATEGY.weighted(tier, context({}));
    expect([...order(ranked)].sort()).toEqual(['a/m', 'b/m', 'c/m']);
    expect(order(STRATEGY.ordered(tier, context({})))).toEqual(['a/m', 'b/m', 'c/m']);
  });
});
