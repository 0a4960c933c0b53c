import { byScore, type Strategy } from './strategy.js';

/**
 * Most rpm/tpm headroom left in the current windows (the tightest of the provider's and the model's
 * limits), so load spreads before any one target starts answering 429. Scored as the share used.
 */
export const usage: Strategy = (tier, ctx) => byScore(tier, (c) => 1 - ctx.state.headroom(c.provider, c.model), ctx.random);
