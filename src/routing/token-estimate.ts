import type { ChatRequest } from '../providers/types.js';

/** Completion tokens assumed when a request sets no max_tokens. */
export const DEFAULT_COMPLETION_ESTIMATE = 512;

/**
 * A request's prompt, about four characters a token. Cheap (one stringify, no tokenizer), and
 * used where a bound is wanted before the call: rate budgets, spend reservations.
 */
export function estimatePromptTokens(request: ChatRequest): number {
  return Math.ceil(JSON.stringify(request.messages).length / 4) + (request.tools ? Math.ceil(JSON.stringify(request.tools).length / 4) : 0);
}

/** The completion tokens a request allows itself: its own max tokens, else a default. */
export function completionBudget(request: ChatRequest): number {
  const asked = Number(request.max_completion_tokens ?? request.max_tokens ?? DEFAULT_COMPLETION_ESTIMATE);
  return Number.isFinite(asked) && asked > 0 ? asked : DEFAULT_COMPLETION_ESTIMATE;
}

/** Prompt plus completion budget: what a call may use at most, as far as we can tell beforehand. */
export function estimateTokens(request: ChatRequest): number {
  return estimatePromptTokens(request) + completionBudget(request);
}
