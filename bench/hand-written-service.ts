/**
 * The service a user would write by hand instead of `npm start`, for submit-then-wait: one process
 * with a Fastify API (POST /v1/jobs adds a BullMQ job whose data is the request; GET /v1/jobs/:id?wait
 * waits on it through QueueEvents) and a worker that POSTs the request to the provider with undici,
 * as hand-written.ts does (its providerCall). No validation, routing, ledger, log line or webhook: the floor the
 * submit-then-wait row is held to, driven by the same callers.
 *
 * node hand-written-service.js <redis url> <provider base url> <port> <prefix>
 */
import { Job, Queue, QueueEvents, Worker } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { providerCall } from './hand-written.js';

const [redisUrl, providerBaseUrl, port, prefix] = process.argv.slice(2) as [string, string, string, string];
const CONCURRENCY = 50;

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue('service', { connection, prefix });
// QueueEvents blocks on its stream, so it has a connection of its own.
const eventsConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const events = new QueueEvents('service', { connection: eventsConnection, prefix });
const { pool, call } = providerCall(providerBaseUrl, CONCURRENCY);
const worker = new Worker('service', call, { connection, prefix, concurrency: CONCURRENCY, removeOnComplete: { count: 1000 } });

const app = Fastify();
app.post<{ Body: { request: unknown } }>('/v1/jobs', async (request, reply) => {
  const job = await queue.add('chat', request.body.request);
  return reply.code(202).send({ id: job.id, status: 'queued' });
});
app.get<{ Params: { id: string }; Querystring: { wait?: string } }>('/v1/jobs/:id', async (request, reply) => {
  const job = await Job.fromId(queue, request.params.id);
  if (!job) return reply.code(404).send({ error: 'not found' });
  try {
    const result = await job.waitUntilFinished(events, Number(request.query.wait ?? 0) * 1000);
    return { id: job.id, status: 'succeeded', result };
  } catch (err) {
    return { id: job.id, status: 'failed', error: String(err) };
  }
});

await Promise.all([events.waitUntilReady(), worker.waitUntilReady()]);
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write('listening\n');

process.once('SIGTERM', async () => {
  await app.close();
  await worker.close();
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await pool.close();
  connection.disconnect();
  eventsConnection.disconnect();
  process.exit(0);
});
