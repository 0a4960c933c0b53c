import { randomBytes } from 'node:crypto';
import calculateSlot from 'cluster-key-slot';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisWork, redisWork } from '../bench/redis-work.js';
import { parseConfig } from '../src/config/load.js';
import { hopJobId, queuePrefix } from '../src/queues/provider-queues.js';
import { batch as together } from '../src/redis/batch.js';
import { createRedis } from '../src/redis/connection.js';
import { LocalCluster } from '../src/redis/local-cluster.js';
import { chat, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

const TENANTS = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark'];
const keyOf = (t: string) => `sy-${t}-key-0123456789`;
const PROVIDERS = ['pa', 'pb', 'pc'] as const;

type NodeWork = RedisWork & { port: number; keys: number };

/** Each master's own INFO (commands and main-thread CPU, read as the bench reads them) and key count. */
async function nodeWork(cluster: LocalCluster): Promise<NodeWork[]> {
  return Promise.all(
    cluster.ports.map(async (port) => {
      const node = cluster.node(port);
      try {
        const [work, keys] = await Promise.all([redisWork(node), node.dbsize()]);
        return { ...work, port, keys };
      } finally {
        node.disconnect();
      }
    }),
  );
}

/**
 * The sharded layout (redis.shards) on a real three-master Redis Cluster: tenants' jobs and
 * counters in slots of their own, each provider's queue in its own, and every feature still
 * working, with each script on one slot and the Redis work spread over the masters.
 */
describe('Redis Cluster, sharded layout', () => {
  let cluster: LocalCluster;
  const mocks: Partial<Record<(typeof PROVIDERS)[number], MockServer>> = {};
  let broker: TestBroker;
  const prefix = `{sy-shard-${randomBytes(3).toString('hex')}}`;
  const as = (tenant: string) => ({ authorization: `Bearer ${keyOf(tenant)}` });

  beforeAll(async () => {
    cluster = await LocalCluster.start(3);
    for (const p of PROVIDERS) mocks[p] = await startMock(p === 'pa' ? { rules: [{ match: 'fall-back', status: 503 }] } : {});
    const config = parseConfig(
      {
        redis: { cluster: cluster.nodes, prefix, shards: 12 },
        providers: Object.fromEntries(PROVIDERS.map((p) => [p, { type: 'openai', base_url: mocks[p]!.baseUrl, api_key: `sk-${p}-secret`, max_in_flight: 20 }])),
        models: { 'to-pa': ['pa/m'], 'to-pb': ['pb/m'], 'to-pc': ['pc/m'], chain: ['pa/m', 'pb/m'] },
        tasks: { default: 'to-pa' },
        breaker: { failure_threshold: 1000 },
        auth: { api_keys: TENANTS.map((t) => ({ name: t, key: keyOf(t), ...(t === 'stark' && { limits: { max_queued: 3 } }) })) },
        pricing: { 'pa/m': { input: 1, output: 2 }, 'pb/m': { input: 1, output: 2 }, 'pc/m': { input: 1, output: 2 } },
      },
      {},
      'cluster test',
    );
    // A provider's queue is one slot wherever CRC16 puts this run's random prefix: placed on a master
    // each, as an operator reshards a hot queue (and as the bench does), so the split does not
    // depend on the prefix drawn. The shards spread by themselves (checked below).
    for (const [i, p] of PROVIDERS.entries()) await cluster.place(`${queuePrefix(config.redis, p)}:llm-${p}:wait`, i);
    broker = await startBroker(config, { workers: [] });
  }, 60_000);
  afterAll(async () => {
    await broker?.close();
    await Promise.all(Object.values(mocks).map((m) => m.app.close()));
    await cluster?.stop();
  });

  it('runs jobs, bulk, fallback, long-polls, lists, batches and the front door, and spreads the work over the masters', async () => {
    const before = await nodeWork(cluster);
    const ids: { id: string; tenant: string }[] = [];
    const models = ['to-pa', 'to-pb', 'to-pc'];
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        TENANTS.filter((t) => t !== 'stark').map(async (tenant, i) => {
          const res = await broker.call('POST', '/v1/jobs', { model: models[(round + i) % 3], request: chat(`${tenant} ${round}`) }, as(tenant));
          expect(res.status, JSON.stringify(res.body)).toBe(202);
          ids.push({ id: res.body.id, tenant });
        }),
      );
    }
    const bulk = await broker.call('POST', '/v1/jobs/bulk', { jobs: models.map((model) => ({ model, request: chat('bulk') })) }, as('hooli'));
    expect(bulk.status, JSON.stringify(bulk.body)).toBe(202);
    for (const j of bulk.body.data) ids.push({ id: j.id, tenant: 'hooli' });
    // Its first target answers 503: the job moves to the other provider's queue, in another slot.
    const fellBack = await broker.call('POST', '/v1/jobs', { model: 'chain', request: chat('please fall-back') }, as('acme'));
    ids.push({ id: fellBack.body.id, tenant: 'acme' });

    const done = await Promise.all(ids.map(async ({ id, tenant }) => (await broker.call('GET', `/v1/jobs/${id}?wait=20`, undefined, as(tenant))).body));
    expect(done.map((j) => j.status)).toEqual(done.map(() => 'succeeded'));
    const moved = done.find((j) => j.id === fellBack.body.id);
    expect(moved.attempts.map((a: { provider: string; outcome: string }) => [a.provider, a.outcome])).toEqual([['pa', 'fallback'], ['pb', 'succeeded']]);
    // Its hops' BullMQ logs, in each queue's own slot, written apart from the record's script.
    expect(await broker.runtime.queues.get('pa').getJobLogs(`${hopJobId(fellBack.body.id, 0)}`)).toMatchObject({ logs: [expect.stringMatching(/^claimed by worker/), 'called pa/m', expect.stringMatching(/^fallback/), 'handed to llm-pb as hop 1 (pb/m)'] });
    // Another tenant cannot see it: the id names a shard, not a permission.
    expect((await broker.call('GET', `/v1/jobs/${fellBack.body.id}`, undefined, as('globex'))).status).toBe(404);

    // A tenant's list comes from its own shard's index.
    const listed = await broker.call('GET', '/v1/jobs?limit=100', undefined, as('globex'));
    expect(listed.body.data.map((j: { id: string }) => j.id).sort()).toEqual(ids.filter((j) => j.tenant === 'globex').map((j) => j.id).sort());

    // Admission, in the tenant's shard: max_queued 3 holds against 6 at once.
    const mocksSlow = Object.values(mocks);
    for (const m of mocksSlow) m!.behaviour.latencyMs = 300;
    const burst = await Promise.all(Array.from({ length: 6 }, () => broker.call('POST', '/v1/jobs', { request: chat('burst') }, as('stark'))));
    expect(burst.filter((r) => r.status === 202)).toHaveLength(3);
    expect(burst.filter((r) => r.status === 429)).toHaveLength(3);
    for (const r of burst.filter((r) => r.status === 202)) expect((await broker.call('GET', `/v1/jobs/${r.body.id}?wait=20`, undefined, as('stark'))).body.status).toBe('succeeded');
    for (const m of mocksSlow) m!.behaviour.latencyMs = 0;

    // The front door, through the OpenAI SDK.
    const client = new OpenAI({ baseURL: `${broker.url}/v1`, apiKey: keyOf('initech') });
    const answer = await client.chat.completions.create({ model: 'to-pc', ...chat('front door') } as never);
    expect((answer as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toMatch(/front door/);

    // A batch: its lines' jobs count into it from their shard, and it completes.
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([['a', 'b', 'c'].map((c) => JSON.stringify({ custom_id: c, method: 'POST', url: '/v1/chat/completions', body: { model: 'to-pb', ...chat(c) } })).join('\n')]), 'in.jsonl');
    const file = (await (await fetch(`${broker.url}/v1/files`, { method: 'POST', body: form, headers: as('umbrella') })).json()) as { id: string };
    const batch = (await broker.call('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }, as('umbrella'))).body;
    const finished = await waitFor(async () => {
      const b = (await broker.call('GET', `/v1/batches/${batch.id}`, undefined, as('umbrella'))).body;
      return b.status === 'completed' ? b : undefined;
    }, 20_000);
    expect(finished.request_counts).toEqual({ total: 3, completed: 3, failed: 0 });

    // Totals summed over the shards equal the ledgers of the jobs.
    const ledger = (p: string) => done.flatMap((j) => j.attempts).filter((a: { provider: string }) => a.provider === p).length;
    const totals = Object.fromEntries(await Promise.all(PROVIDERS.map(async (p) => [p, await broker.runtime.store.providerTotals(p)] as const)));
    // The burst, the front door and the batch went through pa, pc and pb on top of the polled jobs.
    expect(totals.pa!.attempts).toBe(ledger('pa') + 3);
    expect(totals.pb!.attempts).toBe(ledger('pb') + 3);
    expect(totals.pc!.attempts).toBe(ledger('pc') + 1);
    // Each shard keeps its own share of a provider's totals; the sum is what the ledger says.
    expect(totals.pa!.cost_usd).toBeGreaterThan(0);

    // Every job's record lives in its tenant's shard slot, and no script ever crossed slots.
    const keys = broker.runtime.store.keys;
    for (const { id, tenant } of ids) expect(calculateSlot(keys.job(id))).toBe(calculateSlot(keys.tenant(tenant)));
    // The shards' tags spread evenly over the slots, so each master holds 4 of the 12.
    const node = cluster.node(cluster.ports[0]!);
    const ranges = (await node.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    node.disconnect();
    const owner = (slot: number) => ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    const perMaster = new Map<number, number>();
    for (const shard of keys.shardPrefixes) perMaster.set(owner(calculateSlot(shard)), (perMaster.get(owner(calculateSlot(shard))) ?? 0) + 1);
    expect([...perMaster.values()]).toEqual([4, 4, 4]);
    expect(broker.logs.raw.join('\n')).not.toMatch(/CROSSSLOT|MOVED/);

    // Reads across shards on several masters: a Cluster pipeline refuses them, batch() (src/redis/batch.ts) answers in order.
    const redis = createRedis(broker.config.redis.url!, {}, true);
    try {
      const spread = keys.shardPrefixes.filter((_, k) => k % 4 === 0).map((p) => `${p}:probe`);
      await Promise.all(spread.map((k, i) => redis.set(k, String(i))));
      await expect(spread.reduce((p, k) => p.get(k), redis.pipeline()).exec()).rejects.toThrow();
      expect(((await spread.reduce((p, k) => p.get(k), together(redis)).exec()) ?? []).map(([, v]: [Error | null, unknown]) => v)).toEqual(spread.map((_, i) => String(i)));
    } finally {
      redis.disconnect();
    }

    const after = await nodeWork(cluster);
    const calls = after.map((a, i) => a.calls - before[i]!.calls);
    const cpu = after.map((a, i) => a.cpuUs - before[i]!.cpuUs);
    const total = calls.reduce((a, b) => a + b, 0);
    console.log(`per master: commands ${calls.map((c) => `${((100 * c) / total).toFixed(0)}%`).join(' / ')}, CPU µs ${cpu.map((c) => c.toFixed(0)).join(' / ')}, keys ${after.map((a) => a.keys).join(' / ')}`);
    // Each master carries a real share of the work: none idle, none with nearly all of it.
    for (const c of calls) expect(c / total).toBeGreaterThan(0.1);
    for (const a of after) expect(a.keys).toBeGreaterThan(0);
  }, 90_000);
});
