import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis } from '../src/redis/connection.js';
import { dropPrefix, redisUrl, testPrefix } from './support/broker.js';

/** The broker's connections send one turn's commands in one socket write (src/redis/coalesced-writes.ts). */
describe('coalesced writes', () => {
  const cleanup: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function connected(): Promise<{ redis: Redis; prefix: string }> {
    const prefix = testPrefix();
    const redis = createRedis(redisUrl());
    cleanup.push(() => dropPrefix(prefix), () => redis.disconnect());
    await redis.ping();
    return { redis, prefix };
  }

  /** Counts the socket writes (one per chunk sent alone, one per batch of corked chunks) from now on. */
  function countWrites(redis: Redis): { readonly writes: number } {
    const socket = redis.stream as unknown as { _write: (...a: unknown[]) => unknown; _writev: (...a: unknown[]) => unknown };
    const counter = { writes: 0 };
    for (const method of ['_write', '_writev'] as const) {
      const original = socket[method].bind(socket);
      socket[method] = (...a: unknown[]) => {
        counter.writes++;
        return original(...a);
      };
    }
    return counter;
  }

  it('sends the commands of one event-loop turn in one write, in order, each with its own answer', async () => {
    const { redis, prefix } = await connected();
    const counter = countWrites(redis);
    const replies = await Promise.all(Array.from({ length: 50 }, () => redis.incr(`${prefix}:n`)));
    expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(counter.writes).toBe(1);
  });

  it('keeps a failing command to itself: the others of its write still answer', async () => {
    const { redis, prefix } = await connected();
    await redis.set(`${prefix}:text`, 'not a number');
    const counter = countWrites(redis);
    const [before, failed, after] = await Promise.allSettled([redis.incr(`${prefix}:n`), redis.incr(`${prefix}:text`), redis.incr(`${prefix}:n`)]);
    expect(before).toEqual({ status: 'fulfilled', value: 1 });
    expect(failed.status).toBe('rejected');
    expect(String((failed as PromiseRejectedResult).reason)).toMatch(/not an integer/);
    expect(after).toEqual({ status: 'fulfilled', value: 2 });
    expect(counter.writes).toBe(1);
  });

  it('sends a command of a later turn in a write of its own, without waiting for more', async () => {
    const { redis, prefix } = await connected();
    const counter = countWrites(redis);
    for (let i = 1; i <= 3; i++) expect(await redis.incr(`${prefix}:n`)).toBe(i);
    expect(counter.writes).toBe(3);
  });

  it('coalesces on the new socket after a reconnection', async () => {
    const { redis, prefix } = await connected();
    const first = redis.stream;
    const id = await redis.client('ID');
    const killer = createRedis(redisUrl());
    cleanup.push(() => killer.disconnect());
    const ready = new Promise((resolve) => redis.once('ready', resolve));
    await killer.client('KILL', 'ID', String(id));
    await ready;
    expect(redis.stream).not.toBe(first);
    const counter = countWrites(redis);
    const replies = await Promise.all(Array.from({ length: 20 }, () => redis.incr(`${prefix}:m`)));
    expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(counter.writes).toBe(1);
  });
});
