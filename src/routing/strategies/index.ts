import type { Strategy as StrategyName } from '../../config/schema.js';
import { cost } from './cost.js';
import { latency } from './latency.js';
import { leastBusy } from './least-busy.js';
import { ordered } from './ordered.js';
import type { Strategy } from './strategy.js';
import { usage } from './usage.js';
import { weighted } from './weighted.js';

export const STRATEGY: Record<StrategyName, Strategy> = { ordered, weighted, least_busy: leastBusy, latency, cost, usage };
export type { Candidate, RankContext, Strategy } from './strategy.js';
