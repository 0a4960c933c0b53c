import type { Pricing } from '../../providers/pricing.js';
import type { RoutingSnapshot } from '../routing-state.js';

/** One target of a tier, as a strategy sees it; a strategy may note the measure it ranked by. */
export interface Candidate {
  target: string;
  provider: string;
  model: string;
  tier: number;
  weight: number;
  /** The measure the strategy ranked by, for the job's routing record. */
  score?: number;
}

export interface RankContext {
  state: RoutingSnapshot;
  pricing: Pricing;
  promptTokens: number;
  completionTokens: number;
  /** In [0, 1); tests and the bench may pass a seeded one. */
  random: () => number;
}

/** Orders the targets of one tier, best first. The router falls back along that order. */
export type Strategy = (tier: Candidate[], ctx: RankContext) => Candidate[];

/** A random order, each draw by weight among those left: weighted sampling without replacement. */
export function weightedOrder<T extends { weight: number }>(items: T[], random: () => number): T[] {
  const left = [...items];
  const out: T[] = [];
  while (left.length > 0) {
    const total = left.reduce((n, c) => n + c.weight, 0);
    let r = random() * total;
    let i = 0;
    while (i < left.length - 1 && r >= left[i]!.weight) r -= left[i++]!.weight;
    out.push(left.splice(i, 1)[0]!);
  }
  return out;
}

/**
 * Lowest score first; equal scores (two unlimited targets, two idle ones) are ordered by weight at
 * random rather than by config order, so a tie does not send everything to the first listed.
 */
export function byScore(tier: Candidate[], score: (c: Candidate) => number, random: () => number): Candidate[] {
  const scored = weightedOrder(tier, random).map((c) => ({ ...c, score: score(c) }));
  // Array.prototype.sort is stable: the weighted shuffle decides ties.
  return scored.sort((a, b) => a.score - b.score);
}
