import type { Usage } from '../../store/job-record.js';
import { badResponse, classifyStatus } from '../errors.js';
import type { ChatCompletion, ChatRequest, HttpAnswer, HttpRequest, ProviderAdapter } from '../types.js';
import { openAIStream } from './stream.js';

export interface OpenAIAdapterOptions {
  baseUrl: string;
  apiKey?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/** Pulls `{message, code}` out of an OpenAI-style `{"error": {...}}` body (or a bare string). */
export function openAIErrorDetail(body: unknown): { message?: string; code?: string } {
  const err = (body as { error?: unknown } | undefined)?.error;
  if (typeof err === 'string') return { message: err };
  if (err && typeof err === 'object') {
    const { message, code, type } = err as Record<string, unknown>;
    return {
      ...(typeof message === 'string' && { message }),
      ...(typeof code === 'string' ? { code } : typeof type === 'string' ? { code: type } : {}),
    };
  }
  return {};
}

export function normaliseUsage(raw: unknown): Usage | null {
  if (!raw || typeof raw !== 'object') return null;
  const u = raw as Record<string, unknown>;
  const prompt = Number(u.prompt_tokens ?? 0);
  const completion = Number(u.completion_tokens ?? 0);
  return { ...u, prompt_tokens: prompt, completion_tokens: completion, total_tokens: Number(u.total_tokens ?? prompt + completion) };
}

/**
 * The `openai` wire format: OpenAI and every OpenAI-compatible server (DeepSeek, Groq, Mistral,
 * xAI, OpenRouter, Ollama, vLLM, ...). The request passes through untouched apart from `model`,
 * so fields Switchyard does not know still reach the provider.
 */
export function openAIAdapter(opts: OpenAIAdapterOptions): ProviderAdapter {
  const url = `${opts.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  const headers: Record<string, string> = { 'content-type': 'application/json', ...opts.headers };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  return openAIFamily({
    buildRequest: (request, model) => ({ url, headers, body: JSON.stringify({ ...request, model }) }),
  });
}

/** The parts every OpenAI-format service shares: the answer is already a chat.completion, errors are `{"error": {...}}`. */
export function openAIFamily(parts: { buildRequest: (request: ChatRequest, model: string) => HttpRequest }): ProviderAdapter {
  return {
    buildRequest: parts.buildRequest,
    stream: openAIStream(parts.buildRequest),
    parseSuccess(answer: HttpAnswer) {
      const body = answer.body as Record<string, unknown> | undefined;
      if (!body || !Array.isArray(body.choices) || body.choices.length === 0) {
        return { ok: false, error: badResponse('the provider answered without choices', answer.status) };
      }
      const completion = { ...body, object: 'chat.completion' } as ChatCompletion;
      return { ok: true, completion, usage: normaliseUsage(body.usage) };
    },
    classifyError(answer) {
      return classifyStatus(answer.status, openAIErrorDetail(answer.body), answer.headers['retry-after']);
    },
  };
}
