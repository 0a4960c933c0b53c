/**
 * Broker overhead at a steady pace: jobs posted through the HTTP API at `perSecond` for `seconds`;
 * per job, its finish time minus its creation minus the provider call as the worker measured it.
 * Raw BullMQ is `finishedOn - timestamp` around a no-op processor at the same pace.
 *
 * Each side is measured twice in one process. First just after start, behind one second of warm-up:
 * what a broker deployed a moment ago gives, while V8 still runs much of its code in its baseline
 * tier (perf shows its inline-cache builtins on top for the first thousands of jobs) and a job costs
 * several times the CPU it costs later. Then again after `warmJobs` submitted in a closed loop: the
 * steady state of a broker that has been running, which is what the overhead target is about.
 * The measured jobs are posted by a process of their own (paced-caller.ts), as callers are other
 * machines in a deployment; until 2026-12-02 they were posted with fetch from the broker's own
 * process, whose CPU and garbage then counted as the broker's overhead.
 */
import { spawn } from 'node:child_process';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { startRuntime } from '../src/runtime.js';
import { terminalCounter } from './drain.js';
import { chatBody, closedLoop, paced, percentiles } from './harness.js';

const CALLER = new URL('./paced-caller.js', import.meta.url).pathname;

/** Runs the paced phase's caller as its own process (see paced-caller.ts); the jobs' ids when it is done. */
async function callFromOwnProcess(origin: string, total: number, perSecond: number): Promise<string[]> {
  const child = spawn(process.execPath, [CALLER, origin, String(total), String(perSecond)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`the paced caller exited ${code}`);
  return JSON.parse(out) as string[];
}

type Percentiles = ReturnType<typeof percentiles>;

/** One phase's overhead, the provider call time excluded from it, and raw BullMQ's add → completed. */
interface Phase {
  switchyard: Percentiles;
  provider: Percentiles;
  raw: Percentiles;
}

export type OverheadLatency = Record<'cold' | 'steady', Phase>;

interface Pace {
  perSecond: number;
  seconds: number;
  warmJobs: number;
  /** Jobs in flight during the closed-loop warm-up. */
  warmConcurrency: number;
}

export async function overheadLatency(config: Config, redisUrl: string, log: Logger, rawPrefix: string, concurrency: number, pace: Pace): Promise<OverheadLatency> {
  const sy = await switchyardPhases(config, redisUrl, log, pace);
  const raw = await rawPhases(redisUrl, rawPrefix, concurrency, pace);
  return { cold: { ...sy.cold, raw: raw.cold }, steady: { ...sy.steady, raw: raw.steady } };
}

async function switchyardPhases(config: Config, redisUrl: string, log: Logger, pace: Pace) {
  const rt = await startRuntime({ config, redisUrl, log, api: true, workers: [], listen: { port: 0, host: '127.0.0.1' } });
  const submit = async (i: number) => {
    const res = await fetch(`${rt.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chatBody(i) }) });
    await res.arrayBuffer();
  };
  const untilEnded = async (n: number, submitAll: () => Promise<unknown>) => {
    const counter = await terminalCounter(redisUrl, rt.store.keys.events, n);
    await submitAll();
    await counter.all;
    counter.close();
  };
  const measure = async () => {
    const total = pace.perSecond * pace.seconds;
    let ids: string[] = [];
    await untilEnded(total, async () => (ids = await callFromOwnProcess(rt.url!, total, pace.perSecond)));
    const jobs = await rt.store.getMany(ids);
    return {
      switchyard: percentiles(jobs.map((j) => j!.finished_at! - j!.created_at - j!.attempts[0]!.latency_ms)),
      provider: percentiles(jobs.map((j) => j!.attempts[0]!.latency_ms)),
    };
  };
  try {
    await untilEnded(pace.perSecond, () => paced(pace.perSecond, pace.perSecond, (i) => submit(i)));
    const cold = await measure();
    await untilEnded(pace.warmJobs, () => closedLoop(pace.warmJobs, pace.warmConcurrency, (i) => submit(i)));
    const steady = await measure();
    return { cold, steady };
  } finally {
    await rt.close();
  }
}

async function rawPhases(redisUrl: string, prefix: string, concurrency: number, pace: Pace) {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('raw-paced', { connection, prefix });
  let latencies: number[] = [];
  let expected = 0;
  let finish = () => {};
  const worker = new Worker('raw-paced', async () => {}, { connection, prefix, concurrency });
  worker.on('completed', (job: Job) => {
    latencies.push(job.finishedOn! - job.timestamp);
    if (latencies.length === expected) finish();
  });
  const add = (i: number) => queue.add('hop', { id: `job_${i}` }, { priority: 5, removeOnComplete: { count: 1000 } });
  const untilCompleted = async (n: number, addAll: () => Promise<unknown>) => {
    latencies = [];
    expected = n;
    const all = new Promise<void>((r) => (finish = r));
    await addAll();
    await all;
    return percentiles(latencies);
  };
  const total = pace.perSecond * pace.seconds;
  try {
    await untilCompleted(pace.perSecond, () => paced(pace.perSecond, pace.perSecond, add));
    const cold = await untilCompleted(total, () => paced(total, pace.perSecond, add));
    await untilCompleted(pace.warmJobs, () => closedLoop(pace.warmJobs, pace.warmConcurrency, add));
    const steady = await untilCompleted(total, () => paced(total, pace.perSecond, add));
    return { cold, steady };
  } finally {
    await worker.close();
    await queue.close();
    connection.disconnect();
  }
}
