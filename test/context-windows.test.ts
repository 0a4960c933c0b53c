import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { CONTEXT_WINDOW_TABLE, ContextWindows } from '../src/providers/context-windows.js';
import { ModelTable } from '../src/providers/model-table.js';
import { PRICE_TABLE } from '../src/providers/pricing.js';

// Through the real schema, so the test also holds `context_window` to where the config puts it.
const config = parseConfig(
  {
    redis: { url: 'redis://127.0.0.1:6379' },
    providers: {
      local: { type: 'openai', base_url: 'http://127.0.0.1:8000/v1', models: { 'gpt-4o-mini': { context_window: 32_768 }, llama: { context_window: 8192 } } },
      openai: { type: 'openai', base_url: 'https://api.openai.com/v1', models: { 'gpt-4o': { rpm: 100 } } },
    },
    models: { fast: ['openai/gpt-4o-mini', 'local/llama'] },
    tasks: { default: 'fast' },
  },
  {},
  'test',
);
const windows = new ContextWindows(config.providers);

describe('context windows', () => {
  it('knows a window for every model the price table knows', () => {
    const missing = Object.keys(PRICE_TABLE).filter((model) => !Number.isInteger(CONTEXT_WINDOW_TABLE[model]) || CONTEXT_WINDOW_TABLE[model]! <= 0);
    expect(missing).toEqual([]);
    for (const model of Object.keys(PRICE_TABLE)) expect(windows.windowOf('any', model)).toBe(CONTEXT_WINDOW_TABLE[model]);
  });

  it.each([
    ['openai', 'gpt-4o-mini-2024-07-18', 128_000],
    ['openai', 'gpt-4.1-mini-2025-04-14', 1_047_576],
    ['openai', 'gpt-5-mini-2025-08-07', 400_000],
    ['anthropic', 'claude-sonnet-4-5-20250929', 200_000],
    ['bedrock', 'us.anthropic.claude-3-haiku-20240307-v1:0', 200_000],
    ['bedrock', 'eu.amazon.nova-micro-v1:0', 128_000],
    ['bedrock', 'global.anthropic.claude-sonnet-4-5-20250929-v1:0', 200_000],
    ['openrouter', 'openai/gpt-4.1-mini', 1_047_576],
    ['gemini', 'gemini-2.5-flash-lite', 1_048_576],
    ['vertex', 'gemini-2.0-flash@001', 1_048_576],
  ])('%s %s', (provider, model, expected) => {
    expect(windows.windowOf(provider, model)).toBe(expected);
  });

  it('picks the longest matching key, not a shorter model that prefixes it', () => {
    // The shipped families share one window each, so prove the choice on a table where they differ.
    const table = new ModelTable({ 'gpt-4o': 1, 'gpt-4o-mini': 2 }, {});
    expect(table.get('openai', 'gpt-4o-mini-2024-07-18')).toBe(2);
    expect(table.get('openai', 'gpt-4o-2024-08-06')).toBe(1);
    expect(table.get('openrouter', 'openai/gpt-4o-mini')).toBe(2);
    expect(table.get('xai', 'grok-4-0709')).toBeNull();
    expect(windows.windowOf('xai', 'grok-4-0709')).toBe(256_000);
    expect(windows.windowOf('xai', 'grok-3-mini-fast')).toBe(131_072);
  });

  it('lets a provider override a model for that provider only', () => {
    expect(windows.windowOf('local', 'gpt-4o-mini')).toBe(32_768);
    expect(windows.windowOf('openai', 'gpt-4o-mini')).toBe(128_000);
    expect(windows.windowOf('local', 'llama')).toBe(8192);
    expect(windows.windowOf('openai', 'llama')).toBeNull();
    // Model limits without a window leave the table's figure alone.
    expect(windows.windowOf('openai', 'gpt-4o')).toBe(128_000);
  });

  it('answers null for a model it does not know, never a guess', () => {
    expect(windows.windowOf('openai', 'some-new-model')).toBeNull();
    expect(windows.windowOf('x', 'gpt-4oz')).toBeNull();
    expect(windows.windowOf('x', 'constructor')).toBeNull();
    expect(new ContextWindows({}).windowOf('local', 'llama')).toBeNull();
  });
});
