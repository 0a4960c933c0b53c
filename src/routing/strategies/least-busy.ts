import { byScore, type Strategy } from './strategy.js';

/**
 * Fewest jobs assigned and not yet finished, across every process: leases in Redis (see
 * src/lua/includes/inflight.lua) that expire with a worker that died, plus what this process has
 * routed since it last read them. Divided by weight, so a target twice as big takes twice as many.
 */
export const leastBusy: Strategy = (tier, ctx) => byScore(tier, (c) => ctx.state.busy(c.target) / c.weight, ctx.random);
