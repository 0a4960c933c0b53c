/**
 * The worker a user would write by hand instead of Switchyard: a BullMQ queue whose job data is the
 * request, and a worker that POSTs it to the provider with undici and keeps the answer as the job's
 * return value. The same mock, the same concurrency: the floor Switchyard's end-to-end is held to.
 */
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { addInBulk, chatBody } from './harness.js';
import { perJob, type RedisWork, redisWork } from './redis-work.js';

/** The hand-written worker's processor: the job's data POSTed to the provider, the answer its return value. */
export function providerCall(providerBaseUrl: string, connections: number) {
  const url = new URL(providerBaseUrl);
  const pool = new Pool(url.origin, { connections });
  const call = async (job: Job) => {
    const res = await pool.request({ path: `${url.pathname}/chat/completions`, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'bench-model', ...job.data }) });
    const answer = (await res.body.json()) as unknown;
    if (res.statusCode !== 200) throw new Error(`provider answered ${res.statusCode}`);
    return answer;
  };
  return { pool, call };
}

export async function handWrittenThroughput(redisUrl: string, mockBaseUrl: string, n: number, concurrency: number, prefix: string): Promise<{ perSecond: number; redis: RedisWork; workerCpuUs: number }> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const meter = new Redis(redisUrl);
  const queue = new Queue('hand', { connection, prefix });
  const before = await redisWork(meter);
  await addInBulk(queue, n, (i) => ({ name: 'chat', data: chatBody(i), opts: { priority: 5, removeOnComplete: { count: 1000 } } }));
  const { pool, call } = providerCall(mockBaseUrl, concurrency);
  let done = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const worker = new Worker('hand', call, { connection, prefix, concurrency });
  worker.on('completed', () => {
    if (++done === n) finish();
  });
  await all;
  const perSecond = n / ((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(cpu0);
  const after = await redisWork(meter);
  await worker.close();
  await queue.close();
  await pool.close();
  connection.disconnect();
  meter.disconnect();
  return { perSecond, redis: perJob(before, after, n), workerCpuUs: (cpu.user + cpu.system) / n };
}
