import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { EmbeddedRedis } from '../src/redis/embedded.js';
import { type Runtime, startRuntime } from '../src/runtime.js';
import { call, captureLogs, chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

const A = 'sy-limits-tenant-a-0123456789';
const B = 'sy-limits-tenant-b-0123456789';
const as = (key: string) => ({ authorization: `Bearer ${key}` });

/* Limits that one request, or one tenant, could otherwise step around. */
describe('per-request and per-tenant caps', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  async function broker(extra: Record<string, unknown>): Promise<TestBroker> {
    const mock = await startMock();
    const b = await startBroker(configFor({ p: mock }, { auth: { api_keys: [{ name: 'a', key: A }, { name: 'b', key: B }] }, ...extra }), { workers: undefined });
    cleanup.push(() => mock.app.close(), () => b.close(), () => dropPrefix(b.prefix));
    return b;
  }

  it('holds each job of a bulk request to the per-job body limit, and writes none when one is over', async () => {
    const b = await broker({ server: { body_limit_bytes: 64 * 1024 } });
    const big = { request: chat('x'.repeat(100 * 1024)) };
    const res = await b.call('POST', '/v1/jobs/bulk', { jobs: [{ request: chat('fine') }, big, { request: chat('fine too') }] }, as(A));
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ type: 'request_too_large', code: 'job_too_large', param: 'jobs' });
    expect(res.body.error.message).toMatch(/jobs\[1\]\.request: the request is \d+ bytes; one job may be at most 65536/);
    expect((await b.call('GET', '/v1/jobs', undefined, as(A))).body.data).toHaveLength(0);
    // The same job alone is refused by the body limit itself.
    expect((await b.call('POST', '/v1/jobs', big, as(A))).status).toBe(413);
  });

  it('bounds a batch’s metadata as OpenAI does: 16 pairs', async () => {
    const b = await broker({});
    const metadata = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    const res = await b.call('POST', '/v1/batches', { input_file_id: 'file-x', endpoint: '/v1/chat/completions', completion_window: '24h', metadata }, as(A));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: 'metadata', message: expect.stringContaining('at most 16 metadata pairs') });
  });

  it("bounds one tenant's held long-polls, without touching another's", async () => {
    const b = await broker({ server: { max_waiting_per_tenant: 3 } });
    const id = (await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).body.id as string;
    const held = Array.from({ length: 3 }, () => new AbortController());
    const waits = held.map((c) => fetch(`${b.url}/v1/jobs/${id}?wait=30`, { headers: as(A), signal: c.signal }).catch(() => null));
    await expect.poll(() => waitersOf(b), { timeout: 5000 }).toBe(3);
    const refused = await b.call('GET', `/v1/jobs/${id}?wait=30`, undefined, as(A));
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'too_many_waiting', param: 'wait' });
    expect(refused.headers.get('retry-after')).toBe('1');
    // Polling without waiting is always served, and so is another tenant's long-poll.
    expect((await b.call('GET', `/v1/jobs/${id}`, undefined, as(A))).status).toBe(200);
    const other = (await b.call('POST', '/v1/jobs', { request: chat() }, as(B))).body.id as string;
    expect((await b.call('GET', `/v1/jobs/${other}?wait=0.2`, undefined, as(B))).status).toBe(200);
    // A request that gives up frees its place.
    held[0]!.abort();
    await expect.poll(() => waitersOf(b), { timeout: 5000 }).toBe(2);
    expect((await b.call('GET', `/v1/jobs/${id}?wait=0.2`, undefined, as(A))).status).toBe(200);
    for (const c of held) c.abort();
    await Promise.all(waits);
  });
});

/** How many long-polls the broker's process holds. */
const waitersOf = (b: TestBroker) => b.runtime.events?.waiting ?? -1;

/*
 * A filtered list passes over jobs reading only their status. This block runs its own
 * redis-server, so the commands it counts are its own.
 */
describe('filtered job lists', () => {
  let redis: EmbeddedRedis;
  let mock: MockServer;
  let api: Runtime;
  let counter: Redis;

  beforeAll(async () => {
    redis = await EmbeddedRedis.start({ dir: `.switchyard/test-redis-list-${process.pid}`, persist: false });
    mock = await startMock();
    const config = parseConfig({ redis: { url: redis.url, prefix: '{sy}' }, providers: { p: { type: 'openai', base_url: mock.baseUrl } }, models: { fast: ['p/m'] }, tasks: { default: 'fast' } }, {}, 'test');
    api = await startRuntime({ config, redisUrl: redis.url, log: captureLogs().log, api: true, listen: { port: 0, host: '127.0.0.1' } });
    counter = new Redis(redis.url);
  });
  afterAll(async () => {
    counter?.disconnect();
    await api?.close();
    await mock?.app.close();
    await redis?.stop();
  });

  const commands = async () => {
    const stats = (await counter.info('commandstats')).split('\n');
    const calls = (name: string) => Number(/calls=(\d+)/.exec(stats.find((l) => l.startsWith(`cmdstat_${name}:`)) ?? '')?.[1] ?? 0);
    return { hget: calls('hget') };
  };

  it('reads statuses, not records, while it looks; stops at its bound and says where, so paging finds every match', async () => {
    const jobs = Array.from({ length: 1000 }, (_, i) => ({ request: chat(`job ${i} ${'padding '.repeat(100)}`) }));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(...(await call(api.url!, 'POST', '/v1/jobs/bulk', { jobs })).body.data.map((j: { id: string }) => j.id));
    expect(ids).toHaveLength(3000);
    // The three oldest jobs are the only cancelled ones: a rare status, far down the index.
    for (const id of ids.slice(0, 3)) expect((await call(api.url!, 'POST', `/v1/jobs/${id}/cancel`)).status).toBe(200);

    // Record reads are HMGETs of job keys, told by MONITOR from the breakers' own periodic HMGETs.
    const monitor = await counter.monitor();
    const recordReads: string[] = [];
    let fenced!: () => void;
    const fence = new Promise<void>((r) => (fenced = r));
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'hmget' && args[1]?.includes(':job:')) recordReads.push(args[1]);
      if (args[0]?.toLowerCase() === 'echo' && args[1] === 'fence') fenced();
    });
    const before = await commands();
    const first = (await call(api.url!, 'GET', '/v1/jobs?status=cancelled&limit=10')).body;
    const after = await commands();
    // MONITOR streams behind: a marker sent after the call arrives after everything the call sent.
    await counter.echo('fence');
    await fence;
    monitor.disconnect();
    // It looked at its bound of jobs (2,000), a status each, and read no whole record.
    expect(recordReads).toEqual([]);
    expect(after.hget - before.hget).toBe(2000);
    expect(first.data).toHaveLength(0);
    expect(first.has_more).toBe(true);
    expect(first.last_id).toEqual(expect.any(String));
    // Going on from where it stopped finds every cancelled job, and ends.
    const found: string[] = [];
    let page = first;
    for (let n = 0; page.has_more && n < 5; n++) {
      page = (await call(api.url!, 'GET', `/v1/jobs?status=cancelled&limit=10&after=${page.last_id}`)).body;
      found.push(...page.data.map((j: { id: string }) => j.id));
    }
    expect(found.sort()).toEqual(ids.slice(0, 3).sort());
    expect(page.has_more).toBe(false);
  });
});
