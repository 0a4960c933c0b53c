import type { TaskRule } from '../config/schema.js';

/** What a task rule may look at, known before the job is routed. */
export interface RuleFacts {
  inputTokens: number;
  metadata: Record<string, string>;
  priority: number;
}

const inRange = (value: number, r: { gt?: number | undefined; lt?: number | undefined }) =>
  (r.gt === undefined || value > r.gt) && (r.lt === undefined || value < r.lt);

/** Whether every condition a rule names holds; a rule with no `when` always does. */
export function ruleMatches(rule: TaskRule, facts: RuleFacts): boolean {
  const when = rule.when;
  if (!when) return true;
  if (when.input_tokens && !inRange(facts.inputTokens, when.input_tokens)) return false;
  if (when.priority !== undefined && !(typeof when.priority === 'number' ? facts.priority === when.priority : inRange(facts.priority, when.priority))) return false;
  for (const [key, wanted] of Object.entries(when.metadata ?? {})) {
    const value = Object.hasOwn(facts.metadata, key) ? facts.metadata[key] : undefined;
    if (value === undefined || !(typeof wanted === 'string' ? value === wanted : wanted.includes(value))) return false;
  }
  return true;
}

/** The index of the first rule that matches, or -1. */
export function firstMatch(rules: TaskRule[], facts: RuleFacts): number {
  return rules.findIndex((r) => ruleMatches(r, facts));
}
