import { openAIFamily } from '../openai/adapter.js';
import type { ProviderAdapter } from '../types.js';

export interface AzureOpenAIAdapterOptions {
  /** The resource endpoint, `https://<resource>.openai.azure.com`. */
  baseUrl: string;
  apiVersion: string;
  apiKey?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/**
 * Azure OpenAI: the OpenAI wire format under a deployment URL with an `api-version`, keyed by the
 * `api-key` header. A chain target's model is the deployment name; the body carries no model,
 * since the deployment fixes it.
 */
export function azureOpenAIAdapter(opts: AzureOpenAIAdapterOptions): ProviderAdapter {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const version = encodeURIComponent(opts.apiVersion);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.apiKey) headers['api-key'] = opts.apiKey;
  return openAIFamily({
    buildRequest: (request, deployment) => ({
      url: `${base}/openai/deployments/${encodeURIComponent(deployment)}/chat/completions?api-version=${version}`,
      headers,
      body: JSON.stringify(request),
    }),
  });
}
