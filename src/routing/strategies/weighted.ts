import { type Strategy, weightedOrder } from './strategy.js';

/** Random by weight; a job's fallbacks are the others, again by weight. */
export const weighted: Strategy = (tier, ctx) => weightedOrder(tier, ctx.random);
