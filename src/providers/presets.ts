/**
 * OpenAI-compatible services reachable with the `openai` wire format: where they live, which
 * environment variable usually holds their key, and sensible default models for the no-config start.
 */
export interface ProviderPreset {
  base_url: string;
  key_env: string;
  fast: string;
  smart: string;
}

export const OPENAI_COMPATIBLE_PRESETS: Record<string, ProviderPreset> = {
  openai: { base_url: 'https://api.openai.com/v1', key_env: 'OPENAI_API_KEY', fast: 'gpt-4o-mini', smart: 'gpt-4o' },
  deepseek: { base_url: 'https://api.deepseek.com/v1', key_env: 'DEEPSEEK_API_KEY', fast: 'deepseek-chat', smart: 'deepseek-reasoner' },
  groq: { base_url: 'https://api.groq.com/openai/v1', key_env: 'GROQ_API_KEY', fast: 'llama-3.1-8b-instant', smart: 'llama-3.3-70b-versatile' },
  mistral: { base_url: 'https://api.mistral.ai/v1', key_env: 'MISTRAL_API_KEY', fast: 'mistral-small-latest', smart: 'mistral-large-latest' },
  xai: { base_url: 'https://api.x.ai/v1', key_env: 'XAI_API_KEY', fast: 'grok-3-mini', smart: 'grok-4' },
  openrouter: { base_url: 'https://openrouter.ai/api/v1', key_env: 'OPENROUTER_API_KEY', fast: 'openai/gpt-4o-mini', smart: 'anthropic/claude-sonnet-4.5' },
};
