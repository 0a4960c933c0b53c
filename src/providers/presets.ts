/**
 * Well-known providers: where they live, which environment variable usually holds their key, and
 * sensible default models for the no-config start. In a config file `preset: groq` fills in
 * `type`, `base_url` and `api_key` (from the variable) for whatever the entry leaves out.
 */
export interface ProviderPreset {
  type: 'openai' | 'azure-openai' | 'anthropic' | 'gemini' | 'bedrock';
  base_url?: string;
  /** The variable holding the key; the provider is enabled without a config file when it is set. */
  key_env?: string;
  /** For local servers with no key: the variable holding the base URL enables them instead. */
  base_url_env?: string;
  /** Other config fields read from the environment (Bedrock's AWS credentials). */
  env_fields?: Record<string, string>;
  fast: string;
  smart: string;
}

export const PRESETS: Record<string, ProviderPreset> = {
  openai: { type: 'openai', base_url: 'https://api.openai.com/v1', key_env: 'OPENAI_API_KEY', fast: 'gpt-4o-mini', smart: 'gpt-4o' },
  anthropic: { type: 'anthropic', base_url: 'https://api.anthropic.com', key_env: 'ANTHROPIC_API_KEY', fast: 'claude-haiku-4-5', smart: 'claude-sonnet-4-5' },
  gemini: { type: 'gemini', base_url: 'https://generativelanguage.googleapis.com/v1beta', key_env: 'GEMINI_API_KEY', fast: 'gemini-2.5-flash', smart: 'gemini-2.5-pro' },
  // Not enabled by AWS variables alone (they are often set for other reasons): name it in a config file.
  bedrock: {
    type: 'bedrock',
    env_fields: { region: 'AWS_REGION', aws_access_key_id: 'AWS_ACCESS_KEY_ID', aws_secret_access_key: 'AWS_SECRET_ACCESS_KEY', aws_session_token: 'AWS_SESSION_TOKEN' },
    fast: 'amazon.nova-lite-v1:0',
    smart: 'anthropic.claude-3-5-sonnet-20240620-v1:0',
  },
  deepseek: { type: 'openai', base_url: 'https://api.deepseek.com/v1', key_env: 'DEEPSEEK_API_KEY', fast: 'deepseek-chat', smart: 'deepseek-reasoner' },
  groq: { type: 'openai', base_url: 'https://api.groq.com/openai/v1', key_env: 'GROQ_API_KEY', fast: 'llama-3.1-8b-instant', smart: 'llama-3.3-70b-versatile' },
  mistral: { type: 'openai', base_url: 'https://api.mistral.ai/v1', key_env: 'MISTRAL_API_KEY', fast: 'mistral-small-latest', smart: 'mistral-large-latest' },
  xai: { type: 'openai', base_url: 'https://api.x.ai/v1', key_env: 'XAI_API_KEY', fast: 'grok-3-mini', smart: 'grok-4' },
  together: { type: 'openai', base_url: 'https://api.together.xyz/v1', key_env: 'TOGETHER_API_KEY', fast: 'meta-llama/Llama-3.3-70B-Instruct-Turbo', smart: 'deepseek-ai/DeepSeek-V3' },
  fireworks: { type: 'openai', base_url: 'https://api.fireworks.ai/inference/v1', key_env: 'FIREWORKS_API_KEY', fast: 'accounts/fireworks/models/llama-v3p1-8b-instruct', smart: 'accounts/fireworks/models/deepseek-v3' },
  openrouter: { type: 'openai', base_url: 'https://openrouter.ai/api/v1', key_env: 'OPENROUTER_API_KEY', fast: 'openai/gpt-4o-mini', smart: 'anthropic/claude-sonnet-4.5' },
  ollama: { type: 'openai', base_url: 'http://127.0.0.1:11434/v1', base_url_env: 'OLLAMA_BASE_URL', fast: 'llama3.2', smart: 'llama3.1:70b' },
  vllm: { type: 'openai', base_url_env: 'VLLM_BASE_URL', fast: 'default', smart: 'default' },
};
