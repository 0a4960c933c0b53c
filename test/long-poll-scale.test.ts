import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { EmbeddedRedis } from '../src/redis/embedded.js';
import { startRuntime } from '../src/runtime.js';
import { captureLogs, chat, type MockServer, startMock, waitFor } from './support/broker.js';

const WAITERS = 1000;

/**
 * A thousand held long-polls cost one Redis subscription, not a command per waiter per tick. This
 * file runs its own redis-server so the command count it reads is its own.
 */
describe(`${WAITERS} concurrent long-polls`, () => {
  let redis: EmbeddedRedis;
  let mock: MockServer;

  beforeAll(async () => {
    redis = await EmbeddedRedis.start({ dir: `.switchyard/test-redis-${process.pid}`, persist: false });
    mock = await startMock();
  });
  afterAll(async () => {
    await mock.app.close();
    await redis.stop();
  });

  it('holds them on one subscription and answers each when its job ends', async () => {
    const config = parseConfig(
      { redis: { url: redis.url, prefix: '{sy}' }, providers: { p: { type: 'openai', base_url: mock.baseUrl } }, models: { fast: ['p/m'] }, tasks: { default: 'fast' } },
      {},
      'test',
    );
    const { log } = captureLogs();
    const api = await startRuntime({ config, redisUrl: redis.url, log, api: true, listen: { port: 0, host: '127.0.0.1' } });
    const client = new Pool(api.url!, { connections: WAITERS + 10 });
    const counter = new Redis(redis.url);
    try {
      const ids = await Promise.all(
        Array.from({ length: WAITERS }, async (_, i) => {
          const res = await client.request({ path: '/v1/jobs', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chat(`waiter ${i}`) }) });
          return ((await res.body.json()) as { id: string }).id;
        }),
      );
      const held = ids.map(async (id) => {
        const res = await client.request({ path: `/v1/jobs/${id}?wait=60`, method: 'GET' });
        return (await res.body.json()) as { id: string; status: string };
      });
      const events = (api.api as unknown as { services: { events: { waiting: number } } }).services.events;
      await waitFor(async () => events.waiting === WAITERS, 30_000, 20);

      // Two seconds of holding: count every command Redis runs meanwhile.
      const processed = async () => Number(/total_commands_processed:(\d+)/.exec(await counter.info('stats'))![1]);
      const before = await processed();
      await new Promise((r) => setTimeout(r, 2000));
      const during = (await processed()) - before - 1;
      // Background work only (breaker refresh once a second, BullMQ housekeeping): nowhere near one per waiter.
      console.log(`redis commands while ${WAITERS} requests waited 2 s: ${during}`);
      expect(during).toBeLessThan(50);

      const workers = await startRuntime({ config, redisUrl: redis.url, log, workers: [] });
      try {
        const answers = await Promise.all(held);
        expect(answers.map((a) => a.status)).toEqual(ids.map(() => 'succeeded'));
        expect(answers.map((a) => a.id)).toEqual(ids);
        expect(events.waiting).toBe(0);
      } finally {
        await workers.close();
      }
    } finally {
      counter.disconnect();
      await client.close();
      await api.close();
    }
  }, 120_000);
});
