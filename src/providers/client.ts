import { Agent, request as httpRequest } from 'undici';
import type { ProviderConfig } from '../config/schema.js';
import { badResponse, classifyTransport } from './errors.js';
import type { ChatRequest, HttpAnswer, ProviderAdapter, ProviderResult } from './types.js';

/**
 * Calls one configured provider: a keep-alive connection pool sized to its in-flight limit, a
 * deadline per call that really aborts the request, and transport failures mapped to the taxonomy.
 */
export class ProviderClient {
  private readonly agent: Agent;

  constructor(
    readonly name: string,
    private readonly adapter: ProviderAdapter,
    private readonly config: Pick<ProviderConfig, 'timeout_ms' | 'max_in_flight'>,
  ) {
    this.agent = new Agent({ connections: config.max_in_flight, keepAliveTimeout: 30_000 });
  }

  async complete(request: ChatRequest, model: string, signal?: AbortSignal): Promise<ProviderResult> {
    const call = this.adapter.buildRequest(request, model);
    const timeout = AbortSignal.timeout(this.config.timeout_ms);
    const abort = signal ? AbortSignal.any([timeout, signal]) : timeout;
    let answer: HttpAnswer;
    try {
      const res = await httpRequest(call.url, {
        method: 'POST',
        headers: call.headers,
        body: call.body,
        signal: abort,
        dispatcher: this.agent,
      });
      // A body cut off mid-stream rejects here, and is a transport fault like a reset.
      const text = await res.body.text();
      answer = { status: res.statusCode, headers: res.headers, body: parseJson(text) };
      if (res.statusCode >= 200 && res.statusCode < 300 && answer.body === undefined) {
        return { ok: false, error: badResponse(`the provider answered ${res.statusCode} with a body that is not JSON`, res.statusCode) };
      }
    } catch (err) {
      return { ok: false, error: classifyTransport(err, timeout.aborted) };
    }
    if (answer.status >= 200 && answer.status < 300) return this.adapter.parseSuccess(answer, model);
    return { ok: false, error: this.adapter.classifyError(answer) };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
