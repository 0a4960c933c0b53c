import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

/** The fields of a job object this command reads. */
export interface JobView {
  id: string;
  status: string;
  result: unknown;
  usage: unknown;
  cost_usd: number | null;
  error: unknown;
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'expired']);
export const isTerminal = (job: JobView): boolean => TERMINAL.has(job.status);

/** A refusal from the broker (4xx, or a 5xx that outlasted the retries), with its error message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Statuses worth retrying: the broker is restarting, overloaded or briefly unreachable. */
const TRANSIENT = new Set([429, 500, 502, 503, 504]);
const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000];

type Response = { status: number; body: unknown };

export class BrokerClient {
  private readonly pool: Pool;
  private readonly base: string;

  /**
   * One connection per awaited job plus one, so a chunk submission never queues behind long-polls
   * that can each hold a connection for up to the wait time.
   */
  constructor(
    url: URL,
    private readonly apiKey: string | undefined,
    concurrency: number,
    private readonly onRetry: (message: string) => void,
  ) {
    this.pool = new Pool(url.origin, { connections: concurrency + 1 });
    this.base = url.pathname.replace(/\/+$/, '');
  }

  private async once(method: 'GET' | 'POST', path: string, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const res = await this.pool.request({
      method,
      path: `${this.base}${path}`,
      headers: {
        accept: 'application/json',
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(this.apiKey && { authorization: `Bearer ${this.apiKey}` }),
        ...headers,
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal,
    });
    const text = await res.body.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    return { status: res.statusCode, body: parsed };
  }

  /** Every call here may be repeated: reads by nature, bulk submissions through their Idempotency-Key. */
  private async call(method: 'GET' | 'POST', path: string, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let failure: string;
      try {
        res = await this.once(method, path, body, headers, signal);
        if (!TRANSIENT.has(res.status)) return res;
        failure = `${res.status} ${errorMessage(res.body)}`;
      } catch (err) {
        if (signal.aborted) throw err;
        failure = (err as Error).message;
      }
      const delay = RETRY_DELAYS_MS[attempt];
      if (delay === undefined) throw new ApiError(res?.status ?? 0, `${method} ${path}: ${failure} (gave up after ${attempt + 1} tries)`);
      this.onRetry(`${method} ${path}: ${failure}; retrying in ${delay} ms`);
      await sleep(delay, undefined, { signal });
    }
  }

  /** Posts one chunk; the same key and bodies return the jobs the first post created. */
  async submitChunk(jobs: Record<string, unknown>[], key: string, signal: AbortSignal): Promise<JobView[]> {
    const res = await this.call('POST', '/v1/jobs/bulk', { jobs }, { 'idempotency-key': key }, signal);
    if (res.status !== 200 && res.status !== 202) throw new ApiError(res.status, errorMessage(res.body));
    const data = (res.body as { data?: JobView[] }).data;
    if (!Array.isArray(data) || data.length !== jobs.length) throw new ApiError(res.status, `bulk submission answered ${data?.length ?? 'no'} jobs for ${jobs.length}`);
    return data;
  }

  /** The job once it is terminal or `waitS` has passed; null when the broker no longer has it. */
  async getJob(id: string, waitS: number, signal: AbortSignal): Promise<JobView | null> {
    const res = await this.call('GET', `/v1/jobs/${encodeURIComponent(id)}?wait=${waitS}`, undefined, {}, signal);
    if (res.status === 404) return null;
    if (res.status !== 200) throw new ApiError(res.status, errorMessage(res.body));
    return res.body as JobView;
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}

function errorMessage(body: unknown): string {
  const error = (body as { error?: { message?: unknown } } | null)?.error;
  if (typeof error?.message === 'string') return error.message;
  return typeof body === 'string' && body ? body.slice(0, 200) : 'no error message';
}
