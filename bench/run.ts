/**
 * `npm run bench`: Switchyard beside raw BullMQ, measured in the same run on the same Redis
 * (DESIGN section 6). Absolute numbers on a shared 2-core machine are noisy; the ratios are the point.
 *
 * BENCH_JOBS (default 20000) sets the size of the throughput and intake runs; BENCH_ONLY
 * (comma-separated: throughput, instructions, intake, latency, rss, resilience, webhooks, bulk, batch, submitwait, writes, bytes, cluster, routing) runs a subset.
 * BENCH_CALLGRIND_JOBS (default 1000) sets the size of each instructions run (Redis under valgrind).
 * BENCH_ROUTING_JOBS (default 5000) sets the size of each routing strategy's run.
 * BENCH_BATCH_LINES (default 50000) sets the batch size; BENCH_WARM_JOBS (default 10000) the jobs run
 * before the steady-state overhead latency is measured.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { loggerOptions } from '../src/log.js';
import { resolveRedis } from '../src/redis/connection.js';
import { freePort } from '../src/redis/embedded.js';
import { startRuntime } from '../src/runtime.js';
import { Pool } from 'undici';
import { drain, terminalCounter } from './drain.js';
import { handWrittenThroughput } from './hand-written.js';
import { overheadLatency } from './overhead-latency.js';
import { queuedBytes } from './queued-bytes.js';
import { type RedisWork } from './redis-work.js';
import { rawThroughput } from './raw-bullmq.js';
import { redisInstructions } from './redis-instructions.js';
import { clusterSplit } from './cluster.js';
import { routingCosts, tokenCounting } from './routing.js';
import { submitThenWait } from './submit-wait.js';
import { redisWriteCosts, WRITE_DEPTHS, type WriteCost } from './redis-writes.js';
import { type TargetName, targetRows } from './targets.js';
import { chatBody, closedLoop, closedLoopPost, paced, peakRssMiB, percentiles, spawnCli, writeYaml } from './harness.js';

const N = Number(process.env.BENCH_JOBS ?? 20_000);
const CALLGRIND_JOBS = Number(process.env.BENCH_CALLGRIND_JOBS ?? 1000);
const CONCURRENCY = 50;
const HTTP_CONCURRENCY = 32;
const PACE_PER_S = 200;
const PACE_SECONDS = 10;
/** Jobs a broker has run before its steady-state overhead is measured (BENCH_WARM_JOBS). */
const WARM_JOBS = Number(process.env.BENCH_WARM_JOBS ?? 10_000);
const IN_FLIGHT = 10_000;
const ONLY = process.env.BENCH_ONLY?.split(',');
const wanted = (name: string) => !ONLY || ONLY.includes(name);

// Real deployments log one line per attempt; the bench pays for it too, writing to /dev/null.
const log = pino({ ...loggerOptions(), level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
const quiet = pino({ level: 'silent' });

/** A markdown table, as the README carries it. */
function printTable(rows: [string, string, string, string][], header: [string, string, string, string]): void {
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), header[c]!.length));
  const line = (r: string[]) => `| ${r.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}

const prefixes: string[] = [];
const newPrefix = () => {
  const p = `{bench-${randomBytes(3).toString('hex')}}`;
  prefixes.push(p);
  return p;
};

function configFor(redisUrl: string, mockBaseUrl: string, maxInFlight = CONCURRENCY): Config {
  return parseConfig(
    {
      redis: { url: redisUrl, prefix: newPrefix() },
      providers: { mock: { type: 'openai', base_url: mockBaseUrl, max_in_flight: maxInFlight } },
      models: { fast: ['mock/bench-model'] },
      tasks: { default: 'fast' },
    },
    {},
    'bench',
  );
}

async function intakeRates(redisUrl: string, mockBaseUrl: string) {
  const config = configFor(redisUrl, mockBaseUrl);
  const api = await startRuntime({ config, redisUrl, log: quiet, api: true, listen: { port: 0, host: '127.0.0.1' } });
  const switchyard = await closedLoopPost(api.url!, '/v1/jobs', N, HTTP_CONCURRENCY, (i) => ({ priority: 5, request: chatBody(i) }));
  await api.close();

  // The floor for any HTTP intake on BullMQ: a bare Fastify route that only calls queue.add.
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('raw-intake', { connection, prefix: newPrefix() });
  const bare = Fastify();
  let seq = 0;
  bare.post('/jobs', async (req, reply) => {
    const job = await queue.add('hop', { id: `job_${seq++}`, body: req.body }, { priority: 5, removeOnComplete: { count: 1000 } });
    return reply.code(202).send({ id: job.id });
  });
  const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' });
  const rawHttp = await closedLoopPost(bareUrl, '/jobs', N, HTTP_CONCURRENCY, (i) => ({ priority: 5, request: chatBody(i) }));
  await bare.close();

  // And BullMQ alone, no HTTP: queue.add with the same number in flight.
  const rawAdd = await closedLoop(N, HTTP_CONCURRENCY, (i) => queue.add('hop', { id: `job_direct_${i}`, body: { request: chatBody(i) } }, { priority: 5 }));
  await queue.close();
  connection.disconnect();
  return { switchyard: switchyard.perSecond, rawHttp: rawHttp.perSecond, rawAdd };
}

async function peakRss(redisUrl: string) {
  // A slow provider keeps the jobs in flight: 500 running, the rest queued behind them.
  const slowPort = await freePort();
  const slow = await spawnCli(['mock-provider', '--port', String(slowPort), '--latency-ms', '5000'], /listening/);
  const port = await freePort();
  const prefix = newPrefix();
  const file = writeYaml({
    redis: { url: redisUrl, prefix },
    providers: { mock: { type: 'openai', base_url: `http://127.0.0.1:${slowPort}/v1`, max_in_flight: 500 } },
    models: { fast: ['mock/bench-model'] },
    tasks: { default: 'fast' },
  });
  const broker = await spawnCli(['start'], /API listening/, { SWITCHYARD_CONFIG: file, PORT: String(port), LOG_LEVEL: 'info' });
  const idle = peakRssMiB(broker.proc.pid!);
  await closedLoopPost(`http://127.0.0.1:${port}`, '/v1/jobs', IN_FLIGHT, HTTP_CONCURRENCY, (i) => ({ request: chatBody(i) }));
  await new Promise((r) => setTimeout(r, 2000));
  const peak = peakRssMiB(broker.proc.pid!);
  await broker.stop();
  await slow.stop();
  return { idle, peak };
}

/** Time from a provider starting to fail to its breaker opening, with steady traffic on it. */
async function outageToOpen(redisUrl: string): Promise<number[]> {
  const port = await freePort();
  const flaky = await spawnCli(['mock-provider', '--port', String(port)], /listening/);
  const spare = await freePort();
  const healthy = await spawnCli(['mock-provider', '--port', String(spare)], /listening/);
  const control = `http://127.0.0.1:${port}/_mock/behaviour`;
  const samples: number[] = [];
  try {
    for (let round = 0; round < 5; round++) {
      const config = parseConfig(
        {
          redis: { url: redisUrl, prefix: newPrefix() },
          providers: { a: { type: 'openai', base_url: `http://127.0.0.1:${port}/v1` }, b: { type: 'openai', base_url: `http://127.0.0.1:${spare}/v1` } },
          models: { chain: ['a/m', 'b/m'] },
          tasks: { default: 'chain' },
          breaker: { failure_threshold: 3, cooldown_ms: 30_000 },
        },
        {},
        'bench',
      );
      await fetch(control, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errorRate: 0 }) });
      const rt = await startRuntime({ config, redisUrl, log: quiet, workers: [] });
      let stop = false;
      // Steady traffic, 200 jobs/s, until the breaker has opened.
      const traffic = (async () => {
        for (let i = 0; !stop; i++) {
          void rt.intake.submit({ priority: 5, metadata: {}, request: chatBody(i) }, { tenant: 'bench' });
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = performance.now();
      await fetch(control, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errorRate: 1, errorStatus: 503 }) });
      while (rt.breakers.view('a').state !== 'open') await new Promise((r) => setImmediate(r));
      samples.push(performance.now() - t0);
      stop = true;
      await traffic;
      await rt.close();
    }
  } finally {
    await flaky.stop();
    await healthy.stop();
  }
  return samples;
}

/** Completion time of jobs that fall back once (the first target answers 503 at once) against jobs that go straight to a healthy target. */
async function fallbackHopCost(redisUrl: string, mockBaseUrl: string) {
  const port = await freePort();
  const failing = await spawnCli(['mock-provider', '--port', String(port), '--error-rate', '1', '--error-status', '503'], /listening/);
  try {
    const config = parseConfig(
      {
        redis: { url: redisUrl, prefix: newPrefix() },
        providers: { down: { type: 'openai', base_url: `http://127.0.0.1:${port}/v1` }, up: { type: 'openai', base_url: mockBaseUrl } },
        models: { direct: ['up/m'], fallback: ['down/m', 'up/m'] },
        tasks: { default: 'direct' },
        // Keep calling the failing target: this measures a real failed call plus the hop, not a skip.
        breaker: { failure_threshold: 1_000_000 },
      },
      {},
      'bench',
    );
    const rt = await startRuntime({ config, redisUrl, log: quiet, workers: [] });
    const total = 1000;
    const measure = async (model: string) => {
      const counter = await terminalCounter(redisUrl, rt.store.keys.events, total);
      const ids: string[] = [];
      await paced(total, 100, async (i) => {
        const { job } = await rt.intake.submit({ model, priority: 5, metadata: {}, request: chatBody(i) }, { tenant: 'bench' });
        ids.push(job.id);
      });
      await counter.all;
      counter.close();
      const jobs = await rt.store.getMany(ids);
      return percentiles(jobs.map((j) => j!.finished_at! - j!.created_at));
    };
    await measure('direct'); // warm-up
    const direct = await measure('direct');
    const fallback = await measure('fallback');
    await rt.close();
    return { direct, fallback };
  } finally {
    await failing.stop();
  }
}

/**
 * Webhooks: deliveries per second from the sender to a loopback receiver, and the time from a job
 * finishing to its event arriving, at a steady 100 jobs/s.
 */
async function webhookRates(redisUrl: string, mockBaseUrl: string) {
  const received: { at: number; body: string }[] = [];
  let expected = 0;
  let done!: () => void;
  let all = new Promise<void>((r) => (done = r));
  const receiver = Fastify();
  receiver.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, cb) => cb(null, body));
  receiver.post('/hooks', async (req) => {
    received.push({ at: Date.now(), body: req.body as string });
    if (received.length === expected) done();
    return 'ok';
  });
  const url = `${await receiver.listen({ port: 0, host: '127.0.0.1' })}/hooks`;
  const config = parseConfig(
    {
      redis: { url: redisUrl, prefix: newPrefix() },
      providers: { mock: { type: 'openai', base_url: mockBaseUrl, max_in_flight: CONCURRENCY } },
      models: { fast: ['mock/bench-model'] },
      tasks: { default: 'fast' },
      webhooks: { secret: `whsec_${Buffer.from('switchyard-bench-webhook-secret!').toString('base64')}`, allow_private_targets: true },
    },
    {},
    'bench',
  );
  // Queue N finished jobs' events with the sender stopped, then time the drain.
  const n = Math.min(N, 5000);
  const api = await startRuntime({ config, redisUrl, log: quiet });
  const ids: string[] = [];
  for (let i = 0; i < n; i += 500) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, (_, k) => api.intake.submit({ priority: 5, metadata: {}, request: chatBody(i + k), webhook_url: url }, { tenant: 'bench' })),
    );
    ids.push(...batch.map((b) => b.job.id));
  }
  // Cancelled as the API would: the hop leaves its queue, the event goes to the webhook queue.
  await Promise.all(ids.map(async (id) => {
    await api.store.end(id, 'cancelled');
    await api.queues.removeHop('mock', id, 0);
    await api.webhooks.dispatch(id);
  }));
  expected = n;
  const t0 = performance.now();
  const workers = await startRuntime({ config, redisUrl, log: quiet, workers: [] });
  await all;
  const perSecond = n / ((performance.now() - t0) / 1000);

  // Completion → receipt at a steady pace, with everything running.
  received.length = 0;
  const paceTotal = 1000;
  expected = paceTotal;
  all = new Promise<void>((r) => (done = r));
  const paceIds: string[] = [];
  await paced(paceTotal, 100, async (i) => {
    const { job } = await api.intake.submit({ priority: 5, metadata: {}, request: chatBody(i), webhook_url: url }, { tenant: 'bench' });
    paceIds.push(job.id);
  });
  await all;
  const jobs = new Map((await api.store.getMany(paceIds)).map((j) => [j!.id, j!]));
  const lags = received.map((r) => {
    const id = (JSON.parse(r.body) as { data: { id: string } }).data.id;
    return r.at - jobs.get(id)!.finished_at!;
  });
  await workers.close();
  await api.close();
  await receiver.close();
  return { perSecond, n, lag: percentiles(lags) };
}

/** POST /v1/jobs/bulk in requests of 1,000 against BullMQ's addBulk in chunks of 1,000, same jobs. */
async function bulkIntake(redisUrl: string, mockBaseUrl: string) {
  const per = 1000;
  const api = await startRuntime({ config: configFor(redisUrl, mockBaseUrl), redisUrl, log: quiet, api: true, listen: { port: 0, host: '127.0.0.1' } });
  const pool = new Pool(api.url!, { connections: 2 });
  const body = (start: number) => JSON.stringify({ jobs: Array.from({ length: per }, (_, k) => ({ request: chatBody(start + k) })) });
  // Two requests in flight, as a pipeline pushing a file would have.
  let next = 0;
  let t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (next < N) {
        const start = next;
        next += per;
        const res = await pool.request({ path: '/v1/jobs/bulk', method: 'POST', headers: { 'content-type': 'application/json' }, body: body(start) });
        const text = await res.body.text();
        if (res.statusCode !== 202) throw new Error(`bulk answered ${res.statusCode}: ${text.slice(0, 200)}`);
      }
    }),
  );
  const switchyard = N / ((performance.now() - t0) / 1000);
  await pool.close();
  await api.close();

  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('raw-bulk', { connection, prefix: newPrefix() });
  next = 0;
  t0 = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (next < N) {
        const start = next;
        next += per;
        await queue.addBulk(Array.from({ length: per }, (_, k) => ({ name: 'hop', data: { id: `job_${start + k}`, body: { request: chatBody(start + k) } }, opts: { priority: 5 } })));
      }
    }),
  );
  const raw = N / ((performance.now() - t0) / 1000);
  await queue.close();
  connection.disconnect();
  return { switchyard, raw };
}

/** A batch of BENCH_BATCH_LINES lines, upload to completed, through `npm start` as its own process. */
async function bigBatch(redisUrl: string, mockBaseUrl: string) {
  const lines = Number(process.env.BENCH_BATCH_LINES ?? 50_000);
  const port = await freePort();
  const file = writeYaml({
    redis: { url: redisUrl, prefix: newPrefix() },
    providers: { mock: { type: 'openai', base_url: mockBaseUrl, max_in_flight: CONCURRENCY } },
    models: { fast: ['mock/bench-model'] },
    tasks: { default: 'fast' },
  });
  const broker = await spawnCli(['start'], `http://127.0.0.1:${port}/healthz`, { SWITCHYARD_CONFIG: file, PORT: String(port), LOG_LEVEL: 'warn' });
  const base = `http://127.0.0.1:${port}/v1`;
  try {
    const jsonl = Array.from({ length: lines }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', ...chatBody(i) } })).join('\n');
    const t0 = performance.now();
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl]), 'bench.jsonl');
    const uploaded = (await (await fetch(`${base}/files`, { method: 'POST', body: form })).json()) as { id: string };
    const uploadS = (performance.now() - t0) / 1000;
    const created = (await (await fetch(`${base}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input_file_id: uploaded.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json()) as { id: string };
    let status = '';
    let counts = { total: 0, completed: 0, failed: 0 };
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(status)) {
      await new Promise((r) => setTimeout(r, 250));
      const b = (await (await fetch(`${base}/batches/${created.id}`)).json()) as { status: string; request_counts: typeof counts };
      status = b.status;
      counts = b.request_counts;
    }
    const totalS = (performance.now() - t0) / 1000;
    return { lines, status, counts, uploadS, totalS, rss: peakRssMiB(broker.proc.pid!) };
  } finally {
    await broker.stop();
  }
}

const redisCost = (w: RedisWork) => `${fmt(w.calls, 1)} / ${fmt(w.cpuUs)} / ${fmt(w.bytesIn / 1024, 2)} / ${fmt(w.bytesOut / 1024, 2)}`;
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ms = (p: { p50: number; p95: number; p99: number }) => `${fmt(p.p50, 1)} / ${fmt(p.p95, 1)} / ${fmt(p.p99, 1)}`;

async function main() {
  const redis = await resolveRedis(process.env.REDIS_URL, quiet);
  const mockPort = await freePort();
  const mock = await spawnCli(['mock-provider', '--port', String(mockPort)], /listening/);
  const mockBaseUrl = `http://127.0.0.1:${mockPort}/v1`;
  const info = new Redis(redis.url);
  const redisVersion = /redis_version:(\S+)/.exec(await info.info('server'))?.[1];
  try {
    const rows: [string, string, string, string][] = [];
    const measured: Partial<Record<TargetName, number>> = {};
    if (wanted('throughput')) {
      process.stderr.write('end-to-end throughput…\n');
      const raw = await rawThroughput(redis.url, N, CONCURRENCY, newPrefix());
      const hand = await handWrittenThroughput(redis.url, mockBaseUrl, N, CONCURRENCY, newPrefix());
      // Filled first, then drained: the same shape as the raw run.
      const sy = await drain(configFor(redis.url, mockBaseUrl), redis.url, N, log, quiet);
      rows.push(
        [`end-to-end, zero-latency mock (jobs/s, ${fmt(N)} jobs, concurrency ${CONCURRENCY})`, fmt(sy.rate), `${fmt(hand.perSecond)} (hand-written BullMQ + undici worker)`, fmt(sy.rate / hand.perSecond, 2)],
        ['', '', `${fmt(raw.rate)} (no-op worker)`, fmt(sy.rate / raw.rate, 2)],
        ['Redis per job, submit to result: commands / CPU µs / KB in / KB out', redisCost(sy.redis), `${redisCost(raw.redis)} (add + no-op process)`, `${fmt(sy.redis.cpuUs / raw.redis.cpuUs, 2)}× CPU`],
        ['', '', `${redisCost(hand.redis)} (hand-written worker)`, `${fmt(sy.redis.cpuUs / hand.redis.cpuUs, 2)}× CPU`],
        // The drain's rate follows the worker process's CPU: it is the busiest of the three on two cores.
        ['worker process CPU per job while draining (µs)', fmt(sy.workerCpuUs), `${fmt(hand.workerCpuUs)} (hand-written worker)`, `${fmt(sy.workerCpuUs / hand.workerCpuUs, 2)}×`],
      );
      measured.endToEnd = sy.rate / hand.perSecond;
      measured.redisCpu = sy.redis.cpuUs / raw.redis.cpuUs;
    }
    if (wanted('instructions')) {
      process.stderr.write(`Redis instructions per job under callgrind (${fmt(CALLGRIND_JOBS)} jobs a scenario)…\n`);
      const counts = await redisInstructions(
        {
          switchyard: (url, n, queued) => drain(configFor(url, mockBaseUrl), url, n, log, quiet, { afterFill: queued }),
          raw: (url, n, queued) => rawThroughput(url, n, CONCURRENCY, newPrefix(), queued),
        },
        CALLGRIND_JOBS,
      );
      if (typeof counts === 'string') {
        rows.push(['Redis instructions per job, submit to result (thousands, callgrind)', `not counted: ${counts}`, '', '']);
      } else {
        const { switchyard: sy, raw } = counts;
        rows.push(
          [`Redis instructions per job, submit to result (thousands, callgrind, ${fmt(CALLGRIND_JOBS)} jobs)`, fmt(sy.total / 1000), `${fmt(raw.total / 1000)} (add + no-op process)`, `${fmt(sy.total / raw.total, 2)}×`],
          ['  … queueing it (the intake; raw: addBulk)', fmt(sy.queueing / 1000), `${fmt(raw.queueing / 1000)} (add)`, `${fmt(sy.queueing / raw.queueing, 2)}×`],
          ['  … running it to its result (the workers)', fmt((sy.total - sy.queueing) / 1000), `${fmt((raw.total - raw.queueing) / 1000)} (no-op process)`, `${fmt((sy.total - sy.queueing) / (raw.total - raw.queueing), 2)}×`],
        );
        measured.redisInstructions = sy.total / raw.total;
      }
    }
    if (wanted('intake')) {
      process.stderr.write('intake…\n');
      const intake = await intakeRates(redis.url, mockBaseUrl);
      rows.push(
        [`intake POST /v1/jobs (req/s, ${HTTP_CONCURRENCY} in flight)`, fmt(intake.switchyard), `${fmt(intake.rawHttp)} (bare Fastify + queue.add)`, fmt(intake.switchyard / intake.rawHttp, 2)],
        ['', '', `${fmt(intake.rawAdd)} (queue.add, no HTTP)`, fmt(intake.switchyard / intake.rawAdd, 2)],
      );
      measured.intake = intake.switchyard / intake.rawHttp;
    }
    if (wanted('latency')) {
      process.stderr.write(`overhead latency at ${PACE_PER_S} jobs/s for ${PACE_SECONDS} s, after start and after ${fmt(WARM_JOBS)} jobs…\n`);
      const lat = await overheadLatency(configFor(redis.url, mockBaseUrl), redis.url, log, newPrefix(), CONCURRENCY, { perSecond: PACE_PER_S, seconds: PACE_SECONDS, warmJobs: WARM_JOBS, warmConcurrency: HTTP_CONCURRENCY });
      rows.push(
        [`overhead latency p50 / p95 / p99 (ms) at ${PACE_PER_S} jobs/s, after ${fmt(WARM_JOBS)} jobs`, ms(lat.steady.switchyard), `${ms(lat.steady.raw)} (add → completed)`, ''],
        ['  provider call time, excluded above (ms)', ms(lat.steady.provider), '', ''],
        ['  … just after start (1 s of warm-up)', ms(lat.cold.switchyard), `${ms(lat.cold.raw)} (add → completed)`, ''],
      );
      measured.overhead = lat.steady.switchyard.p99;
    }
    if (wanted('rss')) {
      process.stderr.write(`peak RSS with ${fmt(IN_FLIGHT)} jobs in flight…\n`);
      const rss = await peakRss(redis.url);
      rows.push([`peak RSS, all-in-one, ${fmt(IN_FLIGHT)} jobs in flight (MiB)`, `${fmt(rss.peak)} (idle ${fmt(rss.idle)})`, '', '']);
    }
    if (wanted('resilience')) {
      process.stderr.write('outage to breaker open…\n');
      const open = percentiles(await outageToOpen(redis.url));
      rows.push(['provider outage → breaker open (ms, 5 runs, 200 jobs/s): p50 / max', `${fmt(open.p50, 1)} / ${fmt(open.p99, 1)}`, '', '']);
      process.stderr.write('fallback hop cost…\n');
      const hop = await fallbackHopCost(redis.url, mockBaseUrl);
      rows.push(
        ['completion time p50 / p95 / p99 (ms), direct', ms(hop.direct), '', ''],
        ['  … with one fallback hop (503 first)', ms(hop.fallback), '', ''],
        ['  added per fallback hop, p50 (ms)', fmt(hop.fallback.p50 - hop.direct.p50, 1), '', ''],
      );
    }
    if (wanted('webhooks')) {
      process.stderr.write('webhooks…\n');
      const hooks = await webhookRates(redis.url, mockBaseUrl);
      rows.push(
        [`webhook deliveries to a loopback receiver (per s, ${fmt(hooks.n)} events, signed)`, fmt(hooks.perSecond), '', ''],
        ['job finished → webhook received p50 / p95 / p99 (ms), 100 jobs/s', ms(hooks.lag), '', ''],
      );
    }
    if (wanted('bulk')) {
      process.stderr.write('bulk intake…\n');
      const bulk = await bulkIntake(redis.url, mockBaseUrl);
      rows.push([`bulk intake POST /v1/jobs/bulk (jobs/s, 1,000 a request)`, fmt(bulk.switchyard), `${fmt(bulk.raw)} (addBulk, 1,000 a call)`, fmt(bulk.switchyard / bulk.raw, 2)]);
      measured.bulk = bulk.switchyard / bulk.raw;
    }
    if (wanted('batch')) {
      process.stderr.write('big batch…\n');
      const big = await bigBatch(redis.url, mockBaseUrl);
      rows.push([
        `batch of ${fmt(big.lines)} lines, upload → ${big.status} (s), all-in-one process`,
        `${fmt(big.totalS, 1)} (upload ${fmt(big.uploadS, 1)}; ${fmt(big.counts.completed)} ok, ${fmt(big.counts.failed)} failed)`,
        '',
        '',
      ]);
      rows.push(['  peak RSS of that process (MiB)', fmt(big.rss), '', '']);
    }
    if (wanted('submitwait')) {
      process.stderr.write('submit then wait…\n');
      const runs = await submitThenWait(redis.url, mockBaseUrl, mock.proc.pid!, newPrefix(), [{ callers: 32, jobs: 3000 }, { callers: 4, jobs: 1000 }]);
      const cores = availableParallelism();
      for (const { callers, switchyard: sy, handWritten: hw } of runs) {
        rows.push(
          [`submit then wait (POST + ?wait), ${callers} callers, npm start: jobs/s; p50 / p99 ms`, `${fmt(sy.perSecond)}; ${fmt(sy.p50, 1)} / ${fmt(sy.p99, 1)}`, `${fmt(hw.perSecond)}; ${fmt(hw.p50, 1)} / ${fmt(hw.p99, 1)} (hand-written service)`, fmt(sy.perSecond / hw.perSecond, 2)],
          // What the callers, the mock and Redis spend a job bounds the rate on these cores even for a broker costing nothing.
          [`  CPU µs a job: the server / the callers, mock and Redis (jobs/s if the server cost nothing, ${cores} cores)`, `${fmt(sy.serverCpuUs)} / ${fmt(sy.otherCpuUs)} (${fmt((cores * 1e6) / sy.otherCpuUs)})`, `${fmt(hw.serverCpuUs)} / ${fmt(hw.otherCpuUs)} (${fmt((cores * 1e6) / hw.otherCpuUs)})`, `${fmt(sy.serverCpuUs / hw.serverCpuUs, 2)}× CPU`],
        );
      }
      const at = (callers: number) => runs.find((r) => r.callers === callers)!;
      measured.submitWait32 = at(32).switchyard.perSecond;
      measured.submitWaitRatio = at(32).switchyard.perSecond / at(32).handWritten.perSecond;
      measured.submitWait4 = at(4).switchyard.p50;
    }
    if (wanted('writes')) {
      process.stderr.write('a script command, three ways of writing it…\n');
      const costs = await redisWriteCosts(redis.url, newPrefix());
      const cost = (way: WriteCost['way'], inFlight: number) => costs.find((c) => c.way === way && c.inFlight === inFlight)!;
      rows.push(['a script command: sender / Redis CPU µs, coalesced writes (auto-pipelined; each alone)', '', '', '']);
      for (const inFlight of WRITE_DEPTHS) {
        const [c, a, w] = [cost('coalesced', inFlight), cost('auto-pipelined', inFlight), cost('alone', inFlight)];
        rows.push([`  ${inFlight} in flight`, `${fmt(c.senderUs, 1)} / ${fmt(c.redisUs, 1)}`, `${fmt(a.senderUs, 1)} / ${fmt(a.redisUs, 1)}; ${fmt(w.senderUs, 1)} / ${fmt(w.redisUs, 1)}`, `${fmt(c.senderUs / a.senderUs, 2)}× sender`]);
      }
    }
    if (wanted('bytes')) {
      process.stderr.write('Redis bytes per queued job…\n');
      const bytes = await queuedBytes(redis.url, configFor(redis.url, mockBaseUrl), newPrefix(), Math.min(N, 10_000), quiet);
      rows.push([`Redis memory per queued job (bytes; request ${fmt(bytes.requestBytes)} B)`, fmt(bytes.switchyard), `${fmt(bytes.raw)} (BullMQ job, request as data)`, fmt(bytes.switchyard / bytes.raw, 2)]);
      measured.bytes = bytes.switchyard - bytes.requestBytes;
    }
    if (wanted('cluster')) {
      process.stderr.write('sharded layout on a 3-master cluster…\n');
      const split = await clusterSplit(redis.url, mockBaseUrl, Math.min(N, 10_000), newPrefix, log, quiet);
      const sum = split.masters.reduce((a, m) => a + m.cpuUs, 0);
      const busiest = Math.max(...split.masters.map((m) => m.cpuUs));
      rows.push(
        [`sharded, 3 masters (12 shards; 48 tenants × 3 providers), ${fmt(split.jobs)} jobs: per master commands / CPU µs a job`, split.masters.map((m) => `${fmt(m.calls, 1)} / ${fmt(m.cpuUs)}`).join('; '), `${fmt(split.single.calls, 1)} / ${fmt(split.single.cpuUs)} (one Redis, unsharded)`, `${fmt(busiest / split.single.cpuUs, 2)} busiest`],
        ['  all masters together (CPU µs a job; ratio to one Redis)', fmt(sum), '', fmt(sum / split.single.cpuUs, 2)],
      );
    }
    if (wanted('routing')) {
      process.stderr.write('routing strategies…\n');
      const costs = await routingCosts(redis.url, mockBaseUrl, Number(process.env.BENCH_ROUTING_JOBS ?? 5000), newPrefix, log, quiet);
      const base = costs.find((c) => c.strategy === 'ordered')!;
      rows.push(['routing, per job: route µs / Redis commands / Redis CPU µs; drain jobs/s (ratio to ordered)', '', '', '']);
      for (const c of costs) {
        rows.push([`  ${c.strategy}`, `${fmt(c.routeUs, 1)} / ${fmt(c.commandsPerJob, 1)} / ${fmt(c.redisCpuUsPerJob)}; ${fmt(c.jobsPerS)}`, c === base ? '' : `${fmt(base.commandsPerJob, 1)} cmds (ordered)`, fmt(c.jobsPerS / base.jobsPerS, 2)]);
      }
      for (const t of tokenCounting()) {
        rows.push([`prompt tokens, ${t.size}: estimate / o200k tokenizer (µs per job; tokens)`, `${fmt(t.estimateUs, 2)} / ${fmt(t.tokenizerUs, 1)}`, `${fmt(t.estimate)} / ${fmt(t.tokens)}`, '']);
      }
    }
    console.log(`\nSwitchyard bench: node ${process.version}, ${cpus().length} cores, Redis ${redisVersion}, ${new Date().toISOString().slice(0, 10)}\n`);
    printTable(rows, ['scenario', 'Switchyard', 'raw BullMQ', 'ratio']);
    if (Object.keys(measured).length > 0) {
      console.log('');
      printTable(targetRows(measured), ['hot-path target (issue 15)', 'target', 'this run', '']);
    }
  } finally {
    for (const p of prefixes) {
      const keys = await info.keys(`${p}*`);
      for (let i = 0; i < keys.length; i += 500) await info.unlink(...keys.slice(i, i + 500));
    }
    info.disconnect();
    await mock.stop();
    await redis.embedded?.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
