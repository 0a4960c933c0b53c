import { randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Receiver } from './support/receiver.js';
import { chat, configFor, dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix, testRedis, waitFor } from './support/broker.js';

/**
 * Redis Cluster runs a multi-key script only when all its keys share a slot. With a hash-tagged
 * prefix every key Switchyard and BullMQ create must land in one slot: run every feature once and
 * check each key that exists afterwards.
 */
describe('Redis Cluster: one hash slot for every key', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let receiver: Receiver;

  beforeAll(async () => {
    mock = await startMock();
    receiver = await new Receiver().start();
    broker = await startBroker(
      configFor(
        { p: mock },
        {
          // The one-slot layout, whatever SY_TEST_SHARDS says (test/cluster-sharding.test.ts covers the sharded one).
          redis: { url: redisUrl(), prefix: testPrefix(), shards: 0 },
          webhooks: { secret: `whsec_${randomBytes(32).toString('base64')}`, allow_private_targets: true },
          auth: { api_keys: [{ name: 'slot-tenant', key: 'sy-slot-tenant-key-0123', limits: { rpm: 1000, max_queued: 1000, monthly_budget_usd: 100 } }] },
          // A budget can only hold priced models.
          pricing: { 'p/model-a': { input: 0.15, output: 0.6 } },
        },
      ),
    );
    broker.config.providers.p = { ...broker.config.providers.p!, tpm: 1_000_000, rate_window_ms: 60_000 };
  });
  afterAll(async () => {
    await broker.close();
    await receiver.stop();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('keeps jobs, queues, breakers, budgets, webhooks, deadlines, files, batches and streams in the prefix\'s slot', async () => {
    const auth = { authorization: 'Bearer sy-slot-tenant-key-0123' };
    const job = (await broker.call('POST', '/v1/jobs', { request: chat(), webhook_url: receiver.url, deadline_s: 60 }, { ...auth, 'idempotency-key': 'slot-1' })).body;
    await broker.call('GET', `/v1/jobs/${job.id}?wait=20`, undefined, auth);
    await waitFor(async () => receiver.received.length === 1);
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', ...chat() } })}\n`]), 'in.jsonl');
    const file = (await (await fetch(`${broker.url}/v1/files`, { method: 'POST', body: form, headers: auth })).json()) as { id: string };
    const batch = (await broker.call('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }, auth)).body;
    await waitFor(async () => (await broker.call('GET', `/v1/batches/${batch.id}`, undefined, auth)).body.status === 'completed');
    // A streamed front-door call leaves its chunks' stream.
    const streamed = await fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'fast', ...chat(), stream: true }) });
    expect(await streamed.text()).toMatch(/data: \[DONE\]/);

    const redis = testRedis();
    try {
      const keys = await redis.keys(`${broker.prefix}*`);
      const expected = calculateSlot(broker.prefix);
      // Every feature left keys behind, and all of them are in one slot.
      for (const part of [':job:', ':jobs:', ':idem:', ':llm-p:', ':sy-webhooks:', ':sy-deadlines:', ':sy-batches:', ':breaker:', ':budget:', ':usage:', ':tenant:', ':file:', ':batch:', ':file-quota:', ':stream:']) {
        expect(keys.some((k) => k.includes(part)), part).toBe(true);
      }
      expect(keys.filter((k) => calculateSlot(k) !== expected)).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });
});
