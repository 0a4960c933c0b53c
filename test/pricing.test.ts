import { describe, expect, it } from 'vitest';
import { Pricing } from '../src/providers/pricing.js';

const usage = (prompt: number, completion: number, details: Record<string, unknown> = {}) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, ...details });

describe('pricing', () => {
  const pricing = new Pricing({ 'mock/m': { input: 1, output: 2 }, 'gpt-4o': { input: 3, output: 12 } });

  it.each([
    ['openai', 'gpt-4o-mini', usage(1_000_000, 1_000_000), 0.15 + 0.6],
    ['openai', 'gpt-4o-mini-2024-07-18', usage(2000, 1000), (2000 * 0.15 + 1000 * 0.6) / 1e6],
    ['anthropic', 'claude-sonnet-4-5-20250929', usage(1000, 500), (1000 * 3 + 500 * 15) / 1e6],
    ['bedrock', 'us.anthropic.claude-3-haiku-20240307-v1:0', usage(4000, 100), (4000 * 0.25 + 100 * 1.25) / 1e6],
    ['openrouter', 'openai/gpt-4o-mini', usage(1000, 0), (1000 * 0.15) / 1e6],
    ['gemini', 'gemini-2.5-flash', usage(1000, 1000), (1000 * 0.3 + 1000 * 2.5) / 1e6],
  ])('%s %s', (provider, model, u, expected) => {
    expect(pricing.cost(provider, model, u)).toBeCloseTo(expected, 10);
  });

  it('prices cached reads and cache writes at their own rates', () => {
    const cached = usage(10_000, 0, { prompt_tokens_details: { cached_tokens: 8000, cache_creation_tokens: 1000 } });
    // 1,000 fresh at 3, 8,000 read at 0.30, 1,000 written at 3.75 (claude-sonnet-4-5)
    expect(pricing.cost('anthropic', 'claude-sonnet-4-5', cached)).toBeCloseTo((1000 * 3 + 8000 * 0.3 + 1000 * 3.75) / 1e6, 10);
  });

  it('lets the config override by provider/model or by model', () => {
    expect(pricing.cost('mock', 'm', usage(1000, 1000))).toBeCloseTo(0.003, 10);
    expect(pricing.cost('azure', 'gpt-4o', usage(1000, 0))).toBeCloseTo(0.003, 10);
  });

  it('does not guess: an unknown model, or no usage, has no cost', () => {
    expect(pricing.cost('openai', 'some-new-model', usage(1000, 1000))).toBeNull();
    expect(pricing.cost('openai', 'gpt-4o-mini', null)).toBeNull();
    // `gpt-4o` must not price `gpt-4o-audio-preview`-like ids as a different model without a separator.
    expect(pricing.priceOf('x', 'gpt-4oz')).toBeNull();
  });
});
