import { Pool } from 'undici';
import type { ProviderConfig } from '../config/schema.js';
import { badResponse, classifyTransport, type ProviderError } from './errors.js';
import { redact, secretsOf } from './redact.js';
import { ChunkAssembler } from './chunk-assembler.js';
import type { ChatChunk, ChatRequest, HttpAnswer, HttpRequest, ProviderAdapter, ProviderResult, StreamDecoder } from './types.js';

/** What stops a call: an AbortSignal, or an EventEmitter that emits `abort` and says `aborted` (undici takes either). */
export type CallStop = AbortSignal | (NodeJS.EventEmitter & { readonly aborted: boolean; readonly reason?: unknown });

export interface StreamOptions {
  timeoutMs?: number;
  signal?: CallStop;
  /** The id the assembled completion carries (the chunks' own). */
  completionId: string;
  /** Each batch of chunks as it is decoded; the next is read only once this resolves (backpressure). */
  onChunks(chunks: ChatChunk[]): Promise<void>;
}

/** A streamed call: what it added up to, or its error, and how many chunks reached `onChunks` first. */
export type StreamResult = ProviderResult & { streamed: number; firstChunkMs?: number };

/**
 * Calls one configured provider: a keep-alive connection pool per origin sized to the in-flight
 * limit, a timeout per call that really aborts the request, and transport failures mapped to the
 * taxonomy.
 *
 * The timeout uses undici's own headers/body timers rather than an AbortSignal per call: a
 * non-streaming completion sends its headers only once the answer is ready, so the headers timer
 * bounds the whole call, and the body timer bounds a stall while reading it. AbortSignal.timeout
 * cost a third of the client's throughput in `npm run bench`.
 */
export class ProviderClient {
  private readonly pools = new Map<string, Pool>();
  /** Adapters build few distinct URLs; parse each once. */
  private readonly targets = new Map<string, { pool: Pool; path: string }>();

  /** This provider's own credentials: never to reappear in an error message. */
  private readonly secrets: string[];

  constructor(
    readonly name: string,
    private readonly adapter: ProviderAdapter,
    private readonly config: Pick<ProviderConfig, 'timeout_ms' | 'max_in_flight'> & Partial<ProviderConfig>,
  ) {
    this.secrets = secretsOf([config.api_key, config.aws_access_key_id, config.aws_secret_access_key, config.aws_session_token, ...Object.values(config.headers ?? {})]);
  }

  private target(url: string): { pool: Pool; path: string } {
    let target = this.targets.get(url);
    if (!target) {
      const { origin, pathname, search } = new URL(url);
      let pool = this.pools.get(origin);
      if (!pool) {
        pool = new Pool(origin, { connections: this.config.max_in_flight, keepAliveTimeout: 30_000 });
        this.pools.set(origin, pool);
      }
      target = { pool, path: pathname + search };
      if (this.targets.size < 1000) this.targets.set(url, target);
    }
    return target;
  }

  async complete(request: ChatRequest, model: string, opts: { timeoutMs?: number; signal?: CallStop } = {}): Promise<ProviderResult> {
    const call = await this.adapter.buildRequest(request, model);
    const result = await this.send(call, model, opts);
    // Every error leaves through here, whichever adapter or transport fault produced it.
    if (!result.ok) result.error.message = redact(result.error.message, this.secrets);
    return call.dropped?.length ? { ...result, dropped: call.dropped } : result;
  }

  private async send(call: HttpRequest, model: string, opts: { timeoutMs?: number; signal?: CallStop }): Promise<ProviderResult> {
    const timeout = opts.timeoutMs ?? this.config.timeout_ms;
    const { pool, path } = this.target(call.url);
    let res;
    try {
      res = await pool.request({
        path,
        method: 'POST',
        headers: call.headers,
        body: call.body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(opts.signal && { signal: opts.signal }),
      });
    } catch (err) {
      return { ok: false, error: classifyTransport(err) };
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      // Headers came, then the body stopped short of its length: a cut-off answer, not a refusal.
      const cut = classifyTransport(err);
      return { ok: false, error: cut.type === 'timeout' ? cut : badResponse(`the provider's answer was cut off: ${cut.message}`, res.statusCode) };
    }
    const answer: HttpAnswer = { status: res.statusCode, headers: res.headers, body: parseJson(text) };
    if (res.statusCode >= 200 && res.statusCode < 300 && answer.body === undefined) {
      return { ok: false, error: badResponse(`the provider answered ${res.statusCode} with a body that is not JSON`, res.statusCode) };
    }
    if (answer.status >= 200 && answer.status < 300) return this.adapter.parseSuccess(answer, model);
    return { ok: false, error: this.adapter.classifyError(answer) };
  }

  /**
   * Streams a completion: each decoded batch of chunks goes to `onChunks` as it arrives, and the
   * result is the completion they add up to. The timeout bounds the wait for the answer to begin and
   * each silence after (undici's headers and body timers); a whole stream may take longer. An error
   * after chunks went out says so in `streamed`, because the caller can no longer take it back.
   */
  async stream(request: ChatRequest, model: string, opts: StreamOptions): Promise<StreamResult> {
    const streaming = this.adapter.stream;
    const call = await streaming.buildStreamRequest(request, model);
    const result = await this.sendStream(call, model, opts, streaming.decoder(model));
    if (!result.ok) result.error.message = redact(result.error.message, this.secrets);
    return call.dropped?.length ? { ...result, dropped: call.dropped } : result;
  }

  private async sendStream(call: HttpRequest, model: string, opts: StreamOptions, decoder: StreamDecoder): Promise<StreamResult> {
    const timeout = opts.timeoutMs ?? this.config.timeout_ms;
    const { pool, path } = this.target(call.url);
    const started = performance.now();
    const created = Math.floor(Date.now() / 1000);
    let res;
    try {
      res = await pool.request({ path, method: 'POST', headers: call.headers, body: call.body, headersTimeout: timeout, bodyTimeout: timeout, ...(opts.signal && { signal: opts.signal }) });
    } catch (err) {
      return { ok: false, error: classifyTransport(err), streamed: 0 };
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      // Refused before any chunk: an ordinary error answer, classified as the call's would be.
      const text = await res.body.text().catch(() => '');
      return { ok: false, error: this.adapter.classifyError({ status: res.statusCode, headers: res.headers, body: parseJson(text) }), streamed: 0 };
    }
    const assembler = new ChunkAssembler();
    let firstChunkMs: number | undefined;
    const deliver = async (chunks: ChatChunk[]) => {
      if (chunks.length === 0) return;
      firstChunkMs ??= Math.round(performance.now() - started);
      for (const c of chunks) assembler.add(c);
      await opts.onChunks(chunks);
    };
    const failed = (error: ProviderError): StreamResult => ({ ok: false, error, streamed: assembler.count, ...(firstChunkMs !== undefined && { firstChunkMs }) });
    try {
      for await (const bytes of res.body) {
        const step = decoder.push(bytes as Uint8Array);
        await deliver(step.chunks);
        if (step.error) {
          res.body.destroy();
          return failed(step.error);
        }
      }
    } catch (err) {
      const cut = classifyTransport(err);
      return failed(cut.type === 'timeout' ? cut : badResponse(`the provider's stream was cut off: ${cut.message}`, res.statusCode));
    }
    const last = decoder.end();
    await deliver(last.chunks);
    if (last.error) return failed(last.error);
    return { ok: true, completion: assembler.completion(opts.completionId, created, model), usage: assembler.usage, streamed: assembler.count, ...(firstChunkMs !== undefined && { firstChunkMs }) };
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
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
