import type { Strategy } from './strategy.js';

/** The config's order: the first target takes every job while it is healthy. */
export const ordered: Strategy = (tier) => tier;
