/**
 * Switchyard end to end, as the throughput and routing rows measure it: jobs queued through the
 * intake first (no workers), then the time for one worker process to drain them, and what Redis
 * spent per job from submission to result.
 */
import { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import type { Logger } from '../src/log.js';
import { type Runtime, startRuntime } from '../src/runtime.js';
import { chatBody } from './harness.js';
import { perJob, type RedisWork, redisWork } from './redis-work.js';

/** Counts terminal-job events on the broker's channel until `n` have arrived. */
export async function terminalCounter(redisUrl: string, channel: string, n: number) {
  const sub = new Redis(redisUrl);
  let count = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  sub.on('message', () => {
    if (++count === n) done();
  });
  await sub.subscribe(channel);
  return { all, close: () => sub.disconnect() };
}

/** Who submits and where to: one tenant and the default task, unless a scenario spreads them. */
export interface Mix {
  tenants: string[];
  models?: string[];
}

/** Submits `n` jobs through the intake, 500 at a time, job i from tenant i and to model i of the mix (round robin). */
export async function fill(rt: Runtime, n: number, mix: Mix = { tenants: ['bench'] }): Promise<void> {
  const { tenants, models } = mix;
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, (_, k) => {
        const j = i + k;
        const model = models?.[j % models.length];
        return rt.intake.submit({ priority: 5, metadata: {}, request: chatBody(j), ...(model && { model }) }, { tenant: tenants[j % tenants.length]! });
      }),
    );
  }
}

export interface DrainOptions {
  /** Gets the intake-only runtime first, for measurements of its own. */
  beforeFill?: (rt: Runtime) => Promise<void>;
  /** Called once every job is queued, before any worker starts. */
  afterFill?: () => void;
  mix?: Mix;
}

export async function drain(config: Config, redisUrl: string, n: number, log: Logger, quiet: Logger, opts: DrainOptions = {}): Promise<{ rate: number; redis: RedisWork; workerCpuUs: number }> {
  const meter = new Redis(redisUrl);
  const intakeOnly = await startRuntime({ config, redisUrl, log: quiet });
  await opts.beforeFill?.(intakeOnly);
  const before = await redisWork(meter);
  await fill(intakeOnly, n, opts.mix);
  opts.afterFill?.();
  const counter = await terminalCounter(redisUrl, intakeOnly.store.keys.events, n);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const workers = await startRuntime({ config, redisUrl, log, workers: [] });
  await counter.all;
  const rate = n / ((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(cpu0);
  const redis = perJob(before, await redisWork(meter), n);
  counter.close();
  await workers.close();
  await intakeOnly.close();
  meter.disconnect();
  return { rate, redis, workerCpuUs: (cpu.user + cpu.system) / n };
}
