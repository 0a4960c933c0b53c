import { byScore, type Strategy } from './strategy.js';

/**
 * Lowest recent latency per output token (a decaying average every worker feeds, in Redis). A
 * target never measured goes first, so it gets measured; the router's exploration keeps the
 * others' figures fresh, which is how traffic comes back to a target that has become fast again.
 */
export const latency: Strategy = (tier, ctx) => byScore(tier, (c) => ctx.state.latencyPerToken(c.target) ?? -1, ctx.random);
