/**
 * Raw BullMQ, the floor under every row that compares with it: `n` plain hops added with addBulk,
 * then drained by a no-op worker, with what Redis spent on each job.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { addInBulk } from './harness.js';
import { perJob, type RedisWork, redisWork } from './redis-work.js';

/** `afterAdd` is called once every job is added, before the worker starts. */
export async function rawThroughput(redisUrl: string, n: number, concurrency: number, prefix: string, afterAdd?: () => void): Promise<{ rate: number; redis: RedisWork }> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const meter = new Redis(redisUrl);
  const queue = new Queue('raw', { connection, prefix });
  const before = await redisWork(meter);
  await addInBulk(queue, n, (i) => ({ name: 'hop', data: { id: `job_${i}`, hop: 0 }, opts: { priority: 5, removeOnComplete: { count: 1000 } } }));
  afterAdd?.();
  let done = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const t0 = performance.now();
  const worker = new Worker('raw', async () => {}, { connection, prefix, concurrency });
  worker.on('completed', () => {
    if (++done === n) finish();
  });
  await all;
  const rate = n / ((performance.now() - t0) / 1000);
  const redis = perJob(before, await redisWork(meter), n);
  await worker.close();
  await queue.close();
  connection.disconnect();
  meter.disconnect();
  return { rate, redis };
}
