import type { Price } from '../config/schema.js';
import type { Usage } from '../store/job-record.js';
import { ModelTable } from './model-table.js';

/**
 * List prices in USD per million tokens, as the providers publish them (standard tier, no batch
 * discount, shortest-context band), for the models people route to most. Prices change: the
 * config's `pricing:` overrides any entry, and a model missing here has `cost_usd: null` rather
 * than a guess.
 */
export const PRICE_TABLE: Record<string, Price> = {
  // OpenAI (Azure OpenAI lists the same global prices)
  'gpt-5': { input: 1.25, output: 10, cached_input: 0.125 },
  'gpt-5-mini': { input: 0.25, output: 2, cached_input: 0.025 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cached_input: 0.005 },
  'gpt-4.1': { input: 2, output: 8, cached_input: 0.5 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cached_input: 0.1 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cached_input: 0.025 },
  'gpt-4o': { input: 2.5, output: 10, cached_input: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cached_input: 0.075 },
  o3: { input: 2, output: 8, cached_input: 0.5 },
  'o4-mini': { input: 1.1, output: 4.4, cached_input: 0.275 },
  // Anthropic (cache reads 0.1×, 5-minute cache writes 1.25× input)
  'claude-opus-4-1': { input: 15, output: 75, cached_input: 1.5, cache_write: 18.75 },
  'claude-opus-4': { input: 15, output: 75, cached_input: 1.5, cache_write: 18.75 },
  'claude-sonnet-4-5': { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75 },
  'claude-sonnet-4': { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75 },
  'claude-haiku-4-5': { input: 1, output: 5, cached_input: 0.1, cache_write: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cached_input: 0.08, cache_write: 1 },
  // Google Gemini (prompts up to 200k tokens)
  'gemini-2.5-pro': { input: 1.25, output: 10, cached_input: 0.125 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5, cached_input: 0.03 },
  'gemini-2.5-flash-lite': { input: 0.1, output: 0.4, cached_input: 0.01 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4, cached_input: 0.025 },
  // Amazon Bedrock (on-demand, us-east-1)
  'anthropic.claude-sonnet-4-5': { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75 },
  'anthropic.claude-3-5-sonnet': { input: 3, output: 15 },
  'anthropic.claude-3-haiku': { input: 0.25, output: 1.25 },
  'amazon.nova-pro': { input: 0.8, output: 3.2, cached_input: 0.2 },
  'amazon.nova-lite': { input: 0.06, output: 0.24, cached_input: 0.015 },
  'amazon.nova-micro': { input: 0.035, output: 0.14, cached_input: 0.00875 },
  'meta.llama3-1-70b-instruct': { input: 0.72, output: 0.72 },
  // OpenAI-compatible services
  'deepseek-chat': { input: 0.28, output: 0.42, cached_input: 0.028 },
  'deepseek-reasoner': { input: 0.28, output: 0.42, cached_input: 0.028 },
  'llama-3.1-8b-instant': { input: 0.05, output: 0.08 },
  'llama-3.3-70b-versatile': { input: 0.59, output: 0.79 },
  'mistral-small-latest': { input: 0.1, output: 0.3 },
  'mistral-large-latest': { input: 2, output: 6 },
  'grok-4': { input: 3, output: 15, cached_input: 0.75 },
  'grok-3-mini': { input: 0.3, output: 0.5, cached_input: 0.075 },
  // The built-in mock provider costs nothing.
  'mock-fast': { input: 0, output: 0 },
  'mock-smart': { input: 0, output: 0 },
};

/** Prices jobs and attempts from reported usage: config overrides first, then the shipped table. */
export class Pricing {
  private readonly table: ModelTable<Price>;

  constructor(overrides: Record<string, Price> = {}) {
    this.table = new ModelTable(PRICE_TABLE, overrides);
  }

  priceOf(provider: string, model: string): Price | null {
    return this.table.get(provider, model);
  }

  /** USD for one call's usage, or null when the model has no known price. */
  cost(provider: string, model: string, usage: Usage | null): number | null {
    if (!usage) return null;
    const price = this.priceOf(provider, model);
    if (!price) return null;
    const details = usage.prompt_tokens_details as { cached_tokens?: number; cache_creation_tokens?: number } | undefined;
    const cached = Number(details?.cached_tokens ?? 0);
    const written = Number(details?.cache_creation_tokens ?? 0);
    const fresh = Math.max(0, usage.prompt_tokens - cached - written);
    const usd =
      fresh * price.input +
      cached * (price.cached_input ?? price.input) +
      written * (price.cache_write ?? price.input) +
      usage.completion_tokens * price.output;
    // `usd` is in millionths of a dollar per token count; round the result to 1e-10 USD.
    return Math.round(usd * 1e4) / 1e10;
  }
}
