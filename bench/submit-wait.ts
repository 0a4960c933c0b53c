/**
 * Submit then wait, as a backend service awaiting its answer would: each of `callers` posts a job
 * and long-polls it to its end, then posts the next, against `npm start` (one all-in-one process)
 * and a zero-latency provider. Jobs/s and the pair's latency.
 */
import { freePort } from '../src/redis/embedded.js';
import { Pool } from 'undici';
import { chatBody, closedLoop, percentiles, spawnCli, writeYaml } from './harness.js';

export async function submitThenWait(redisUrl: string, mockBaseUrl: string, prefix: string, runs: { callers: number; jobs: number }[]) {
  const port = await freePort();
  const file = writeYaml({
    redis: { url: redisUrl, prefix },
    providers: { mock: { type: 'openai', base_url: mockBaseUrl, max_in_flight: 100 } },
    models: { fast: ['mock/bench-model'] },
    tasks: { default: 'fast' },
  });
  const broker = await spawnCli(['start'], /API listening/, { SWITCHYARD_CONFIG: file, PORT: String(port), LOG_LEVEL: 'info' });
  const drive = async (callers: number, jobs: number) => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: callers * 2 });
    const latencies: number[] = [];
    const perSecond = await closedLoop(jobs, callers, async (i) => {
      const start = performance.now();
      const posted = await pool.request({ path: '/v1/jobs', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chatBody(i) }) });
      const { id } = (await posted.body.json()) as { id: string };
      const waited = await pool.request({ path: `/v1/jobs/${id}?wait=30`, method: 'GET' });
      const job = (await waited.body.json()) as { status: string };
      if (job.status !== 'succeeded') throw new Error(`job ${id} ended ${job.status}`);
      latencies.push(performance.now() - start);
    });
    await pool.close();
    return { callers, perSecond, ...percentiles(latencies) };
  };
  try {
    // Warm the process up first.
    await drive(8, 400);
    const out = [];
    for (const run of runs) out.push(await drive(run.callers, run.jobs));
    return out;
  } finally {
    await broker.stop();
  }
}
