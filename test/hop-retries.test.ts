import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { HopData } from '../src/queues/provider-queues.js';
import { HOP_TRIES, withHopRetries } from '../workers/hop-retries.js';
import { captureLogs, dropPrefix, redisUrl, testPrefix, waitFor } from './support/broker.js';

/** A real BullMQ queue and worker on the test Redis, whose processor fails as it is told. */
describe('a hop whose processing fails inside the broker', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function run(fail: (run: number) => Error | null) {
    const prefix = testPrefix();
    const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const queue = new Queue<HopData>('llm-p', { connection, prefix });
    const logs = captureLogs();
    const runs: number[] = [];
    const process = withHopRetries(
      async (job: Job<HopData>) => {
        runs.push(Date.now());
        const err = fail(runs.length);
        if (err) throw err;
        return 'called';
      },
      { log: logs.log, stopping: new AbortController().signal, baseMs: 200 },
    );
    const worker = new Worker<HopData>('llm-p', process, { connection, prefix, concurrency: 1 });
    cleanup.push(() => dropPrefix(prefix), async () => connection.disconnect(), () => queue.close(), () => worker.close());
    // As ProviderQueues adds a hop: its id and priority, no attempts or backoff of BullMQ's.
    await queue.add('hop', { id: 'job_x', hop: 0 }, { jobId: 'x-h0', priority: 5 });
    // The state first: a job read before it, as it moves, could lack what its move wrote.
    const done = await waitFor(async () => {
      const state = await queue.getJobState('x-h0');
      return state === 'completed' || state === 'failed' ? { job: (await queue.getJob('x-h0'))!, state } : undefined;
    }, 10_000);
    return { ...done, runs, logs };
  }

  it('is tried again after the base wait, then twice that, and completes when a try succeeds', async () => {
    const { job, state, runs, logs } = await run((n) => (n < 3 ? new Error('Connection is closed.') : null));
    expect(state).toBe('completed');
    expect(job.returnvalue).toBe('called');
    expect(runs).toHaveLength(3);
    expect(runs[1]! - runs[0]!).toBeGreaterThanOrEqual(200);
    expect(runs[2]! - runs[1]!).toBeGreaterThanOrEqual(400);
    expect(job.data).toEqual({ id: 'job_x', hop: 0, faults: 2 });
    expect(logs.lines.filter((l) => l.msg === 'hop processing failed inside the broker; trying again').map((l) => [l.faults, l.retry_in_ms])).toEqual([[1, 200], [2, 400]]);
  });

  it(`fails the hop after ${HOP_TRIES} tries, so its pool ends the job`, async () => {
    const { job, state, runs } = await run(() => new Error('ERR something broke'));
    expect(state).toBe('failed');
    expect(runs).toHaveLength(HOP_TRIES);
    expect(job.failedReason).toBe('ERR something broke');
  });

  it('does not retry a hop that ended its job', async () => {
    const { state, runs } = await run(() => new UnrecoverableError('the job failed'));
    expect(state).toBe('failed');
    expect(runs).toHaveLength(1);
  });
});
