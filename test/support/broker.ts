import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { inject } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { loggerOptions } from '../../src/log.js';
import { type MockBehaviour, startMockProvider } from '../../src/mock-provider/server.js';
import { type HopData, hopJobId } from '../../src/queues/provider-queues.js';
import { type Runtime, startRuntime } from '../../src/runtime.js';

export const redisUrl = () => inject('redisUrl');

/** A key prefix of its own per broker, hash-tagged like production's `{sy}`. */
export const testPrefix = () => `{sy-test-${randomBytes(4).toString('hex')}}`;

/** Collects every log line the broker writes, parsed, so tests can read what operators would see. */
export function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  const log = pino({ ...loggerOptions(), level: 'debug' }, stream);
  return { log, lines, raw };
}

export type MockServer = Awaited<ReturnType<typeof startMockProvider>>;

export interface TestBroker {
  url: string;
  runtime: Runtime;
  config: Config;
  prefix: string;
  logs: ReturnType<typeof captureLogs>;
  /** POST/GET against the API, JSON in and out. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

/** A config whose providers point at the given mock servers: `{ a: mockA, b: mockB }`. */
export function configFor(mocks: Record<string, MockServer>, extra: Record<string, unknown> = {}, prefix = testPrefix()): Config {
  const providers = Object.fromEntries(Object.entries(mocks).map(([name, m]) => [name, { type: 'openai', base_url: m.baseUrl, api_key: `sk-test-${name}-secret-value`, max_in_flight: 20, timeout_ms: 5000 }]));
  const first = Object.keys(mocks)[0];
  return parseConfig(
    {
      // SY_TEST_SHARDS runs the suite on the sharded layout (redis.shards), on the one test Redis.
      redis: { url: redisUrl(), prefix, ...(process.env.SY_TEST_SHARDS && { shards: Number(process.env.SY_TEST_SHARDS) }) },
      providers,
      models: { fast: [`${first}/model-a`] },
      tasks: { default: 'fast' },
      ...extra,
    },
    {},
    'test',
  );
}

export async function startBroker(config: Config, opts: { api?: boolean; workers?: string[] | undefined } = {}): Promise<TestBroker> {
  const logs = captureLogs();
  const runtime = await startRuntime({
    config,
    redisUrl: config.redis.url ?? redisUrl(),
    log: logs.log,
    api: opts.api ?? true,
    ...('workers' in opts ? (opts.workers ? { workers: opts.workers } : {}) : { workers: [] }),
    listen: { port: 0, host: '127.0.0.1' },
  });
  const url = runtime.url ?? '';
  return {
    url,
    runtime,
    config,
    prefix: config.redis.prefix,
    logs,
    call: (method, path, body, headers = {}) => call(url, method, path, body, headers),
    close: async () => {
      await runtime.close();
    },
  };
}

export async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...headers },
    ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

export async function startMock(behaviour: Partial<MockBehaviour> = {}) {
  return startMockProvider(behaviour);
}

export const testRedis = () => new Redis(redisUrl());

/**
 * A MONITOR connection on the test Redis, once it is monitoring. ioredis switches a connection to
 * monitoring a moment after MONITOR's OK, and reports each line other test files' commands send
 * before that as a command queue error: those lines come before the caller's own, and are dropped.
 */
export async function monitorRedis(): Promise<Redis> {
  const monitor = new Redis(redisUrl(), { monitor: true });
  monitor.on('error', () => {});
  await new Promise((r) => monitor.once('monitoring', r));
  return monitor;
}

/**
 * A job's hop once BullMQ has completed it. That comes just after the settle that answers the
 * job's long-poll, so a test that saw the job end waits for it rather than reading it at once. The
 * state is read first: a hop read as it moves could lack what its move wrote.
 */
export async function completedHop(queue: Queue<HopData>, id: string, hop = 0) {
  const hopId = hopJobId(id, hop);
  await waitFor(async () => (await queue.getJobState(hopId)) === 'completed');
  return (await queue.getJob(hopId))!;
}

/** Runs `fn` with a Redis client of its own, closed after, for a test's direct look at the keys. */
export async function withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = testRedis();
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** Deletes every key under a test prefix. */
export async function dropPrefix(prefix: string): Promise<void> {
  const redis = new Redis(redisUrl());
  // A sharded layout's keys are under tags of their own: `{sy-test-…:3}`, `{sy-test-…:q:p}`.
  for (const match of [`${prefix}*`, `${prefix.slice(0, -1)}:*`]) {
    const stream = redis.scanStream({ match, count: 1000 });
    for await (const keys of stream) if ((keys as string[]).length) await redis.unlink(...(keys as string[]));
  }
  redis.disconnect();
}

export const chat = (content = 'hello') => ({ messages: [{ role: 'user', content }] });

export async function waitFor<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 15_000, stepMs = 20): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
