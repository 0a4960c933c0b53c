import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { builtByBullmq, type HopCommand, HopCommands } from '../src/queues/hop-command.js';
import { type HopData, hopJobId } from '../src/queues/provider-queues.js';
import { withScripts } from '../src/redis/scripts.js';
import { dropPrefix, redisUrl, testPrefix } from './support/broker.js';

/** A hop's BullMQ command, written directly once it has matched BullMQ's own build. */
describe('a hop command', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    vi.useRealTimers();
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  function queueOnRedis() {
    const prefix = testPrefix();
    const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const queue = new Queue<HopData>('llm-p', { connection, prefix });
    cleanup.push(() => dropPrefix(prefix), async () => connection.disconnect(), () => queue.close());
    return { queue, connection };
  }

  const hops = Array.from({ length: 40 }, (_, i) => ({ id: `job_${'x'.repeat(i % 7)}${i}é`, hop: i % 4, priority: 1 + (i % 10) }));
  const opts = (h: { id: string; hop: number; priority: number }) => ({ jobId: hopJobId(h.id, h.hop), priority: h.priority });
  const bytes = (c: HopCommand) => ({ keys: c.keys, args: c.args.map((a) => (typeof a === 'string' ? a : a.toString('hex'))) });

  it('is what BullMQ builds, byte for byte, for every hop after the first, without BullMQ building it', async () => {
    const { queue } = queueOnRedis();
    const commands = new HopCommands(queue);
    // One moment for both builds: the timestamp is the only thing that differs between two calls.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_767_000_000_123);
    await commands.build({ id: hops[0]!.id, hop: hops[0]!.hop }, opts(hops[0]!));
    const bullmq = vi.spyOn(queue.backend, 'addJobToTransaction');
    const direct = await Promise.all(hops.map((h) => commands.build({ id: h.id, hop: h.hop }, opts(h))));
    expect(bullmq).not.toHaveBeenCalled();
    bullmq.mockRestore();
    for (const [i, h] of hops.entries()) expect(bytes(direct[i]!)).toEqual(bytes(await builtByBullmq(queue, { id: h.id, hop: h.hop }, opts(h))));
  });

  it('adds, through BullMQ\'s own script, the hop queue.add would have added', async () => {
    const { queue, connection } = queueOnRedis();
    const commands = new HopCommands(queue);
    await commands.build({ id: 'job_first', hop: 0 }, { jobId: 'first-h0', priority: 5 });
    const command = await commands.build({ id: 'job_abc', hop: 2 }, { jobId: 'abc-h2', priority: 3 });
    // As a bulk request adds its hops: BullMQ's addPrioritizedJob run by addHops.lua.
    await withScripts(connection).addHops(...command.keys, ...command.args);
    const added = (await queue.getJob('abc-h2'))!;
    await queue.add('hop', { id: 'job_abd', hop: 2 }, { jobId: 'abd-h2', priority: 3 });
    const reference = (await queue.getJob('abd-h2'))!;
    expect(added.data).toEqual({ id: 'job_abc', hop: 2 });
    expect(added.name).toBe(reference.name);
    expect({ ...added.opts, jobId: undefined }).toEqual({ ...reference.opts, jobId: undefined });
    expect(await queue.getJobState('abc-h2')).toBe('prioritized');
    const fields = async (id: string) => Object.keys(await connection.hgetall(`${queue.keys['']}${id}`)).sort();
    expect(await fields('abc-h2')).toEqual(await fields('abd-h2'));
  });

  it('stays BullMQ\'s own build when the first hop built directly differs from it, as a BullMQ that adds another way would', async () => {
    const { queue } = queueOnRedis();
    // A BullMQ release that writes one more option for every job.
    const original = queue.backend.addJobToTransaction.bind(queue.backend);
    queue.backend.addJobToTransaction = (client, job, ...rest) => original(client, { ...job, opts: { ...job.opts, lifo: false } }, ...rest);
    const commands = new HopCommands(queue);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_767_000_000_456);
    for (const h of hops.slice(0, 5)) {
      const built = await commands.build({ id: h.id, hop: h.hop }, opts(h));
      expect(bytes(built)).toEqual(bytes(await builtByBullmq(queue, { id: h.id, hop: h.hop }, opts(h))));
    }
  });
});
