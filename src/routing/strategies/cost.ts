import { byScore, type Strategy } from './strategy.js';

/** Cheapest for this request's own token estimate (prompt at the input price, max tokens at the output price); unpriced targets last. */
export const cost: Strategy = (tier, ctx) =>
  byScore(
    tier,
    (c) => {
      const price = ctx.pricing.priceOf(c.provider, c.model);
      return price ? (ctx.promptTokens * price.input + ctx.completionTokens * price.output) / 1e6 : Number.POSITIVE_INFINITY;
    },
    ctx.random,
  );
