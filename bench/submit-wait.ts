/**
 * Submit then wait, as a backend service awaiting its answer would: each of `callers` posts a job
 * and long-polls it to its end, then posts the next, against `npm start` (one all-in-one process)
 * and a zero-latency provider; then the same callers against the service a user would write by
 * hand (hand-written-service.ts). Jobs/s and the pair's latency, and each process's CPU a job:
 * on a machine whose cores the callers, the provider and Redis share with the broker, what those
 * three spend bounds the rate any broker could reach.
 */
import { Pool } from 'undici';
import { Redis } from 'ioredis';
import { freePort } from '../src/redis/embedded.js';
import { chatBody, type Child, closedLoop, cpuUs, percentiles, spawnCli, spawnNode, writeYaml } from './harness.js';
import { perJob, redisWork } from './redis-work.js';

const SERVICE = new URL('./hand-written-service.js', import.meta.url).pathname;

export interface SubmitWaitRun {
  callers: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
  /** CPU µs a job: the process under test, and what else the machine spent on the job (callers, provider, Redis). */
  serverCpuUs: number;
  otherCpuUs: number;
}

async function drive(port: number, server: Child, mockPid: number, meter: Redis, callers: number, jobs: number): Promise<SubmitWaitRun> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: callers * 2 });
  const latencies: number[] = [];
  const [server0, mock0, redis0, self0] = [cpuUs(server.proc.pid!), cpuUs(mockPid), await redisWork(meter), process.cpuUsage()];
  const perSecond = await closedLoop(jobs, callers, async (i) => {
    const start = performance.now();
    const posted = await pool.request({ path: '/v1/jobs', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chatBody(i) }) });
    const { id } = (await posted.body.json()) as { id: string };
    const waited = await pool.request({ path: `/v1/jobs/${id}?wait=30`, method: 'GET' });
    const job = (await waited.body.json()) as { status: string };
    if (job.status !== 'succeeded') throw new Error(`job ${id} ended ${job.status}`);
    latencies.push(performance.now() - start);
  });
  const self = process.cpuUsage(self0);
  const redis = perJob(redis0, await redisWork(meter), jobs);
  const serverCpuUs = (cpuUs(server.proc.pid!) - server0) / jobs;
  const otherCpuUs = (cpuUs(mockPid) - mock0) / jobs + redis.cpuUs + (self.user + self.system) / jobs;
  await pool.close();
  return { callers, perSecond, ...percentiles(latencies), serverCpuUs, otherCpuUs };
}

async function measure(server: Child, port: number, mockPid: number, redisUrl: string, runs: { callers: number; jobs: number }[]): Promise<SubmitWaitRun[]> {
  const meter = new Redis(redisUrl);
  try {
    // Warm the process up first.
    await drive(port, server, mockPid, meter, 8, 400);
    const out = [];
    for (const run of runs) out.push(await drive(port, server, mockPid, meter, run.callers, run.jobs));
    return out;
  } finally {
    meter.disconnect();
    await server.stop();
  }
}

export async function submitThenWait(redisUrl: string, mockBaseUrl: string, mockPid: number, prefix: string, runs: { callers: number; jobs: number }[]) {
  const port = await freePort();
  const file = writeYaml({
    redis: { url: redisUrl, prefix },
    providers: { mock: { type: 'openai', base_url: mockBaseUrl, max_in_flight: 100 } },
    models: { fast: ['mock/bench-model'] },
    tasks: { default: 'fast' },
  });
  const broker = await spawnCli(['start'], /API listening/, { SWITCHYARD_CONFIG: file, PORT: String(port), LOG_LEVEL: 'info' });
  const switchyard = await measure(broker, port, mockPid, redisUrl, runs);
  const servicePort = await freePort();
  const service = await spawnNode(SERVICE, [redisUrl, mockBaseUrl, String(servicePort), `${prefix}:hand`], /listening/);
  const handWritten = await measure(service, servicePort, mockPid, redisUrl, runs);
  return runs.map((r, i) => ({ callers: r.callers, switchyard: switchyard[i]!, handWritten: handWritten[i]! }));
}
