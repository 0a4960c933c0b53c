import type { Config } from '../config/schema.js';
import { ModelTable } from './model-table.js';

/**
 * Total context window in tokens (prompt plus completion, as the providers publish it) for every
 * model the price table knows. Routing skips a target only when a request cannot fit, so a figure
 * here must never be smaller than the provider's real limit; a model missing here is never skipped.
 */
export const CONTEXT_WINDOW_TABLE: Record<string, number> = {
  // OpenAI model pages (platform.openai.com/docs/models); Azure OpenAI serves the same windows.
  'gpt-5': 400_000,
  'gpt-5-mini': 400_000,
  'gpt-5-nano': 400_000,
  'gpt-4.1': 1_047_576,
  'gpt-4.1-mini': 1_047_576,
  'gpt-4.1-nano': 1_047_576,
  'gpt-4o': 128_000,
  'gpt-4o-mini': 128_000,
  o3: 200_000,
  'o4-mini': 200_000,
  // Anthropic models overview: 200K standard (Sonnet 4 / 4.5's 1M window is a beta behind a header).
  'claude-opus-4-1': 200_000,
  'claude-opus-4': 200_000,
  'claude-sonnet-4-5': 200_000,
  'claude-sonnet-4': 200_000,
  'claude-haiku-4-5': 200_000,
  'claude-3-5-haiku': 200_000,
  // Gemini API model pages: Google publishes the input token limit (output limits are separate).
  'gemini-2.5-pro': 1_048_576,
  'gemini-2.5-flash': 1_048_576,
  'gemini-2.5-flash-lite': 1_048_576,
  'gemini-2.0-flash': 1_048_576,
  // Amazon Bedrock model cards: Claude as Anthropic publishes it, Nova and Llama from AWS.
  'anthropic.claude-sonnet-4-5': 200_000,
  'anthropic.claude-3-5-sonnet': 200_000,
  'anthropic.claude-3-haiku': 200_000,
  'amazon.nova-pro': 300_000,
  'amazon.nova-lite': 300_000,
  'amazon.nova-micro': 128_000,
  'meta.llama3-1-70b-instruct': 128_000,
  // DeepSeek "Models & Pricing" (api-docs.deepseek.com): 128K for both aliases since V3.1.
  'deepseek-chat': 128_000,
  'deepseek-reasoner': 128_000,
  // Groq models page (console.groq.com/docs/models).
  'llama-3.1-8b-instant': 131_072,
  'llama-3.3-70b-versatile': 131_072,
  // Mistral models overview (docs.mistral.ai): 128k for Small 3.x and Large 2.x.
  'mistral-small-latest': 128_000,
  'mistral-large-latest': 128_000,
  // xAI models page (docs.x.ai).
  'grok-4': 256_000,
  'grok-3-mini': 131_072,
  // The built-in mock provider has no real limit; a common figure keeps routing tests realistic.
  'mock-fast': 128_000,
  'mock-smart': 128_000,
};

/** A model's context window: `providers.<name>.models.<model>.context_window` first, then the table. */
export class ContextWindows {
  /** Keyed `provider/model`: an override describes one provider's deployment, not the model everywhere. */
  private readonly overrides = new Map<string, number>();
  private readonly table = new ModelTable(CONTEXT_WINDOW_TABLE, {});

  constructor(providers: Config['providers']) {
    for (const [provider, settings] of Object.entries(providers)) {
      for (const [model, limits] of Object.entries(settings.models ?? {})) {
        if (limits.context_window !== undefined) this.overrides.set(`${provider}/${model}`, limits.context_window);
      }
    }
  }

  /** Tokens the model takes in one call, or null when unknown (unknown never rules a target out). */
  windowOf(provider: string, model: string): number | null {
    return this.overrides.get(`${provider}/${model}`) ?? this.table.get(provider, model);
  }
}
