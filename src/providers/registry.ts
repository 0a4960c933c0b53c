import type { Config, ProviderConfig } from '../config/schema.js';
import { ProviderClient } from './client.js';
import { anthropicAdapter } from './anthropic/adapter.js';
import { azureOpenAIAdapter } from './azure-openai/adapter.js';
import { bedrockAdapter } from './bedrock/adapter.js';
import { geminiAdapter } from './gemini/adapter.js';
import { openAIAdapter } from './openai/adapter.js';
import type { ProviderAdapter } from './types.js';

type AdapterFactory = (config: ProviderConfig) => ProviderAdapter;

function requireBaseUrl(config: ProviderConfig): string {
  if (!config.base_url) throw new Error(`provider of type ${config.type} needs a base_url`);
  return config.base_url;
}

/** Wire format → adapter. Adding a wire format is one entry here and one folder beside this file. */
const ADAPTERS: Record<ProviderConfig['type'], AdapterFactory> = {
  openai: (c) => openAIAdapter({ baseUrl: c.base_url ?? 'https://api.openai.com/v1', apiKey: c.api_key, headers: c.headers }),
  anthropic: (c) => anthropicAdapter({ baseUrl: c.base_url ?? 'https://api.anthropic.com', apiKey: c.api_key, version: c.anthropic_version, headers: c.headers }),
  bedrock: (c) =>
    bedrockAdapter({
      region: c.region!,
      baseUrl: c.base_url,
      credentials: { accessKeyId: c.aws_access_key_id!, secretAccessKey: c.aws_secret_access_key!, sessionToken: c.aws_session_token },
      headers: c.headers,
    }),
  gemini: (c) => geminiAdapter({ baseUrl: c.base_url ?? 'https://generativelanguage.googleapis.com/v1beta', apiKey: c.api_key, headers: c.headers }),
  'azure-openai': (c) => azureOpenAIAdapter({ baseUrl: requireBaseUrl(c), apiVersion: c.api_version!, apiKey: c.api_key, headers: c.headers }),
  // The built-in mock speaks the OpenAI wire format; the runtime fills in where it listens.
  mock: (c) => openAIAdapter({ baseUrl: requireBaseUrl(c), apiKey: c.api_key, headers: c.headers }),
};

export function createProviderClients(config: Pick<Config, 'providers'>, only?: string[]): Map<string, ProviderClient> {
  const clients = new Map<string, ProviderClient>();
  for (const [name, provider] of Object.entries(config.providers)) {
    if (only && !only.includes(name)) continue;
    clients.set(name, new ProviderClient(name, ADAPTERS[provider.type](provider), provider));
  }
  return clients;
}
