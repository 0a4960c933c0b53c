/**
 * Redis memory per queued job: `used_memory` before and after queueing `n` jobs with no worker to
 * take them, for Switchyard's intake (record, hop job, indexes) and for BullMQ's own job carrying
 * the same request as its data.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { startRuntime } from '../src/runtime.js';
import { fill } from './drain.js';
import { addInBulk, chatBody } from './harness.js';
import { usedMemory } from './redis-work.js';

export async function queuedBytes(redisUrl: string, config: Config, rawPrefix: string, n: number, quiet: Logger) {
  const meter = new Redis(redisUrl);
  const requestBytes = Array.from({ length: n }, (_, i) => Buffer.byteLength(JSON.stringify(chatBody(i)))).reduce((a, b) => a + b, 0) / n;
  const intakeOnly = await startRuntime({ config, redisUrl, log: quiet });
  const before = await usedMemory(meter);
  await fill(intakeOnly, n);
  const switchyard = ((await usedMemory(meter)) - before) / n;
  await intakeOnly.close();

  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('raw-bytes', { connection, prefix: rawPrefix });
  const rawBefore = await usedMemory(meter);
  await addInBulk(queue, n, (i) => ({ name: 'chat', data: chatBody(i), opts: { priority: 5 } }));
  const raw = ((await usedMemory(meter)) - rawBefore) / n;
  await queue.close();
  connection.disconnect();
  meter.disconnect();
  return { requestBytes, switchyard, raw };
}
