import calculateSlot from 'cluster-key-slot';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { queuePrefix } from '../src/queues/provider-queues.js';
import { Keys } from '../src/store/keys.js';

const slot = calculateSlot;

describe('key layout', () => {
  it('keeps every key in the prefix\'s slot, named as before, when unsharded', () => {
    const keys = new Keys('{sy}');
    const id = keys.newJobId('acme');
    expect(id).toMatch(/^job_[A-Za-z0-9_-]{20}$/);
    expect(keys.job(id)).toBe(`{sy}:job:${id}`);
    expect(keys.tenant('acme')).toBe('{sy}:tenant:acme');
    expect(keys.tenantWindow('acme')).toBe('{sy}:budget:intake:acme');
    expect(keys.webhookOutbox(keys.idShard(id))).toBe('{sy}:webhook-outbox');
    expect(keys.usage('openai', keys.idShard(id))).toBe('{sy}:usage:openai');
    expect(keys.batchesDone(keys.prefix)).toBe('{sy}:batches-done');
    expect(keys.shardPrefixes).toEqual(['{sy}']);
    expect(queuePrefix({ prefix: '{sy}', shards: 0 }, 'openai')).toBe('{sy}');
    // From a pool of random bytes refilled as it runs out: never the same id twice.
    const ids = new Set(Array.from({ length: 10_000 }, () => keys.newJobId('acme')));
    expect(ids.size).toBe(10_000);
  });

  it('puts a tenant\'s jobs, batches and counters in one shard slot, which its ids name', () => {
    const keys = new Keys('{sy}', 12);
    for (const tenant of ['acme', 'globex', 'initech', 'a', 'b', 'c', 'd']) {
      const home = slot(keys.tenant(tenant));
      const job = keys.newJobId(tenant);
      const batch = keys.newBatchId(tenant);
      expect(job).toMatch(/^job_[A-Za-z0-9_-]{20}$/);
      expect(batch).toMatch(/^batch_[A-Za-z0-9_-]{16}$/);
      // Everything one job's scripts touch: record, index, idempotency, totals, leases, window, batch, outbox, usage, alias, lease zset, affinity.
      const shard = keys.idShard(job);
      expect(shard).toBe(keys.tenantShard(tenant));
      for (const key of [keys.job(job), keys.webhookAttempts(job), keys.jobIndex(tenant), keys.idempotency(tenant, 'h'), keys.tenantLeases(tenant), keys.tenantLeaseSizes(tenant),
        keys.tenantWindow(tenant), keys.batch(batch), keys.batchJobs(batch), keys.batchIndex(tenant), keys.webhookOutbox(shard), keys.usage('p', shard),
        keys.alias('fast', shard), keys.inflight('p/m', shard), keys.affinity('fast', 'h', shard), keys.batchesDone(shard)]) {
        expect(slot(key), key).toBe(home);
      }
    }
    // What no job's script touches stays in the prefix's slot.
    for (const key of [keys.breaker('p'), keys.budget('tpm:p'), keys.file('f'), keys.stream('job_x'), keys.routingLatency, keys.health('p')]) expect(slot(key), key).toBe(slot('{sy}'));
    // Each provider's queue has a slot of its own.
    expect(queuePrefix({ prefix: '{sy}', shards: 12 }, 'openai')).toBe('{sy:q:openai}');
  });

  it('spreads the shards evenly over the slots, so an even split of slots gives each master its share', () => {
    for (const n of [3, 12, 64]) {
      const keys = new Keys('{sy}', n);
      expect(new Set(keys.shardPrefixes).size).toBe(n);
      keys.shardPrefixes.forEach((p, k) => expect(Math.floor((slot(p) * n) / 16384)).toBe(k));
    }
  });

  it('maps an id that names no shard to some shard, where it is simply not found', () => {
    const keys = new Keys('{sy}', 4);
    expect(keys.shardPrefixes).toContain(keys.idShard('job_'));
    expect(keys.shardPrefixes).toContain(keys.idShard('nonsense'));
  });

  it('refuses shards under a prefix that is not one hash tag, and takes a cluster by its nodes', () => {
    const parse = (redis: Record<string, unknown>) => parseConfig({ redis, providers: { p: { type: 'openai', base_url: 'http://127.0.0.1:1/v1' } }, models: { fast: ['p/m'] }, tasks: { default: 'fast' } }, {}, 'test');
    expect(() => parse({ prefix: 'sy', shards: 4 })).toThrow(ConfigError);
    expect(() => parse({ prefix: 'sy', shards: 4 })).toThrow(/redis\.prefix.*one hash tag/);
    expect(() => parse({ prefix: '{sy}', shards: 65 })).toThrow(/redis\.shards/);
    expect(parse({ prefix: '{sy}', shards: 4 }).redis.shards).toBe(4);
    // Redis Cluster by its nodes, as DESIGN section 3 writes it.
    expect(parse({ cluster: ['redis://:pw@10.0.0.1:7001', 'redis://10.0.0.2:7002'] }).redis).toMatchObject({ cluster: true, url: 'redis://:pw@10.0.0.1:7001,10.0.0.2:7002' });
    expect(() => parse({ url: 'redis://127.0.0.1:6379', cluster: ['redis://10.0.0.1:7001'] })).toThrow(/not both/);
  });
});
