import Fastify, { type FastifyInstance } from 'fastify';
import { guardLoopback } from './api/loopback-guard.js';
import { protectOperatorRoutes } from './api/operator-auth.js';
import type { Redis } from 'ioredis';
import { ProviderPool } from '../workers/provider-pool.js';
import { BatchWorker } from '../workers/batch-worker.js';
import { BatchSteps } from './queues/batch-steps.js';
import { JobStreams } from './streams/job-streams.js';
import { StreamHub } from './streams/stream-hub.js';
import { TargetStats } from '../workers/target-stats.js';
import { WebhookSender } from '../workers/webhook-sender.js';
import { BatchStore, toPublicBatch } from './batches/batch-store.js';
import { FileStore } from './batches/file-store.js';
import { buildApi } from './api/app.js';
import { ApiKeyAuth } from './api/auth.js';
import type { Config } from './config/schema.js';
import { JobIntake } from './intake/job-intake.js';
import { Metrics } from './metrics.js';
import { TenantLimits } from './intake/tenant-limits.js';
import type { Logger } from './log.js';
import { startMockProvider } from './mock-provider/server.js';
import type { ProviderClient } from './providers/client.js';
import { Pricing } from './providers/pricing.js';
import { createProviderClients } from './providers/registry.js';
import { TargetPolicy, TargetRefused } from './delivery/target-policy.js';
import { ConfigError } from './config/load.js';
import { WebhookQueue } from './delivery/webhook-queue.js';
import { DeadlineQueue } from './queues/deadline-queue.js';
import { ProviderQueues } from './queues/provider-queues.js';
import { BreakerBoard } from './resilience/breaker-board.js';
import { RateBudgets } from './resilience/rate-budget.js';
import { checkEvictionPolicy, createRedis, watchConnection } from './redis/connection.js';
import { Affinity } from './routing/affinity.js';
import { RoutingBudgets } from './routing/budgets.js';
import { Router } from './routing/router.js';
import { RoutingState } from './routing/routing-state.js';
import { ContextWindows } from './providers/context-windows.js';
import { JobEvents } from './store/job-events.js';
import { JobStore } from './store/job-store.js';

/** How long any command but a worker's blocking wait may take before it fails (and the API answers 503). */
const COMMAND_TIMEOUT_MS = 2_000;
/** How long one step of shutdown may take (the worker pools get their calls' grace on top). */
const STEP_BOUND_MS = 5_000;

export interface RuntimeOptions {
  config: Config;
  redisUrl: string;
  log: Logger;
  /** Serve the HTTP API. */
  api?: boolean;
  /** Run worker pools for these providers (all configured ones when empty). Omit for none. */
  workers?: string[];
  /** Overrides config.server for the API listener (tests use port 0). */
  listen?: { port?: number; host?: string };
}

export interface Runtime {
  config: Config;
  store: JobStore;
  queues: ProviderQueues;
  intake: JobIntake;
  breakers: BreakerBoard;
  budgets: RateBudgets;
  routing: RoutingState;
  router: Router;
  webhooks: WebhookQueue;
  api?: FastifyInstance;
  /** The API's base URL, when serving. */
  url?: string;
  /** A worker-only process's metrics URL, when `server.metrics_port` is set. */
  metricsUrl?: string;
  pool?: ProviderPool;
  /** The API's terminal-event fan-out, when serving (its `waiting` counts held long-polls). */
  events?: JobEvents;
  close(): Promise<void>;
}

/**
 * Wires one Switchyard process from its config: API, worker pools, or both. The processes share
 * nothing but Redis, so any number of each can run side by side.
 */
export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { log } = opts;
  let config = opts.config;
  // Before anything is opened: a refused batch webhook stops start-up with nothing to clean up.
  const policy = new TargetPolicy({ allowPrivate: config.webhooks.allow_private_targets, allowlist: config.webhooks.allowlist });
  await checkBatchWebhooks(config, policy, log);
  const closers: (() => Promise<unknown>)[] = [];

  // Each worker process with an unconfigured `mock` provider runs the built-in mock beside it.
  const mockNames = Object.entries(config.providers).filter(([, p]) => p.type === 'mock' && !p.base_url).map(([n]) => n);
  if (opts.workers && mockNames.length > 0) {
    const mock = await startMockProvider();
    closers.push(() => mock.app.close());
    const providers = { ...config.providers };
    for (const name of mockNames) providers[name] = { ...providers[name]!, base_url: mock.baseUrl };
    config = { ...config, providers };
    log.info({ url: mock.baseUrl, providers: mockNames }, 'no provider keys configured: using the built-in mock provider');
  }

  // BullMQ's queues get a connection of their own, and its workers, which block on Redis, another
  // one without a command timeout. Every other command gives up after COMMAND_TIMEOUT_MS, so nothing
  // (a request, a shutdown) waits on a lost Redis for ever.
  const cluster = config.redis.cluster;
  const storeRedis = watchConnection(createRedis(opts.redisUrl, { commandTimeout: COMMAND_TIMEOUT_MS }, cluster), 'store', log);
  const bullRedis = watchConnection(createRedis(opts.redisUrl, { commandTimeout: COMMAND_TIMEOUT_MS }, cluster), 'queues', log);
  const workerRedis = opts.workers ? watchConnection(createRedis(opts.redisUrl, {}, cluster), 'workers', log) : undefined;
  await checkEvictionPolicy(storeRedis, log);

  const ttlMs = config.retention.job_ttl_s * 1000;
  const store = new JobStore(storeRedis, config.redis.prefix, ttlMs, config.redis.shards);
  const queues = new ProviderQueues(bullRedis, config);
  const deadlines = new DeadlineQueue(bullRedis, config.redis.prefix);
  const breakers = new BreakerBoard(storeRedis, watchConnection(storeRedis.duplicate(), 'breaker events', log), store.keys, config, log);
  await breakers.start();
  const budgets = new RateBudgets(storeRedis, store.keys, config);

  const metrics = new Metrics();
  const pricing = new Pricing(config.pricing);
  const routingState = new RoutingState(storeRedis, store.keys, config, (provider) => queues.get(provider).keys.limiter!, log);
  await routingState.start();
  const router = new Router(config, {
    windows: new ContextWindows(config.providers), pricing, state: routingState, breakers, metrics, keys: store.keys,
    budgets: new RoutingBudgets(storeRedis, store.keys, config, routingState, log, metrics),
    affinity: new Affinity(storeRedis, store.keys),
  });
  const intake = new JobIntake({
    store, queues, router, deadlines, metrics,
    webhooks: { policy, signing: Boolean(config.webhooks.secret) },
    limits: new TenantLimits(storeRedis, store.keys, config.auth, pricing),
    maxJobBytes: config.server.body_limit_bytes,
  });
  const webhooks = new WebhookQueue({ connection: bullRedis, redis: storeRedis, prefix: config.redis.prefix, store, config: config.webhooks, log });
  store.webhookOwed = webhooks.onTerminal;
  const files = new FileStore(storeRedis, store.keys, config);
  const batches = new BatchStore(storeRedis, store.keys, ttlMs);
  const batchUrl = (tenant: string) => config.auth.api_keys.find((k) => k.name === tenant)?.webhook_url ?? config.webhooks.batch_url;
  const batchSteps = new BatchSteps(bullRedis, config.redis.prefix);
  const batchRunner = new BatchWorker({
    steps: batchSteps, prefix: config.redis.prefix, batches, files, store, intake, router, queues, log,
    announce: async (tenant, id) => {
      const url = batchUrl(tenant);
      const b = await batches.get(id);
      if (!url || !b) return;
      // The batch keeps where its event went, and (the sender writes them) how each attempt went.
      await batches.set(id, { webhook_url: url });
      await webhooks.batchEvent(tenant, id, b.status!, url, toPublicBatch(id, { ...b, webhook_url: url }));
    },
  });
  const streams = new JobStreams(storeRedis, store.keys, { ttlMs: config.retention.stream_ttl_s * 1000, maxChunks: config.retention.stream_max_chunks });
  const runtime: Runtime = { config, store, queues, intake, breakers, budgets, routing: routingState, router, webhooks, close: async () => {} };

  let clients: Map<string, ProviderClient> | undefined;
  let sender: WebhookSender | undefined;
  let stats: TargetStats | undefined;
  if (opts.workers) {
    const providers = opts.workers.length > 0 ? opts.workers : Object.keys(config.providers);
    clients = createProviderClients(config, providers);
    stats = new TargetStats(storeRedis, store.keys, config, log, metrics);
    stats.start();
    // A hop's record steps (claim, settle) go on the workers' connection, which has no command
    // timeout: a settle that gave up on a frozen Redis may still be run by it once it wakes, and the
    // hop's retry would then call the provider a second time for a job already settled.
    const hopStore = new JobStore(workerRedis!, config.redis.prefix, ttlMs, config.redis.shards);
    hopStore.webhookOwed = webhooks.onTerminal;
    const pool = new ProviderPool({ store: hopStore, queues, clients, breakers, budgets, pricing, config, log, connection: workerRedis!, metrics, streams, stats });
    await pool.start(providers);
    runtime.pool = pool;
    deadlines.startExpirer(workerRedis!, store, log, async (id, hop) => {
      const job = await store.get(id);
      const ref = job?.chain[hop];
      if (ref) await queues.removeHop(ref.slice(0, ref.indexOf('/')), id, hop);
    });
    sender = new WebhookSender({ connection: workerRedis!, config, store, batches, log, metrics });
    sender.start();
    webhooks.startSweeper();
    batchRunner.start(workerRedis!);
  }

  let events: JobEvents | undefined;
  let hub: StreamHub | undefined;
  if (opts.api) {
    events = new JobEvents(watchConnection(storeRedis.duplicate(), 'job events', log), store.keys.events);
    await events.start();
    runtime.events = events;
    // Stream relays block on a connection of their own: it must have no command timeout.
    hub = new StreamHub(watchConnection(createRedis(opts.redisUrl, {}, cluster), 'stream relay', log), storeRedis);
    const auth = new ApiKeyAuth(config.auth);
    const api = await buildApi(
      { intake, store, events, queues, redis: storeRedis, auth, breakers, budgets, routing: routingState, config, webhooks, files, batches, batchSteps, deadlines, metrics, streams, hub },
      { logger: log, bodyLimit: config.server.body_limit_bytes },
    );
    let host = opts.listen?.host ?? config.server.host ?? '0.0.0.0';
    if (auth.devMode && host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') {
      log.warn({ requested: host }, 'dev mode: no API keys are configured, so the API listens on 127.0.0.1 only and asks for no key');
      host = '127.0.0.1';
    } else if (auth.devMode) {
      log.warn('dev mode: no API keys are configured; the API asks for no key');
    }
    runtime.url = await api.listen({ port: opts.listen?.port ?? config.server.port, host });
    runtime.api = api;
    log.info({ url: runtime.url }, 'API listening');
  }

  let metricsServer: FastifyInstance | undefined;
  if (!opts.api && opts.workers && config.server.metrics_port !== undefined) {
    metricsServer = Fastify({ logger: false });
    // Unprotected in dev mode, so then on loopback only, and out of web pages' reach, like the API.
    const open = config.auth.api_keys.length === 0 && !config.auth.admin;
    if (open) guardLoopback(metricsServer);
    await metricsServer.register(async (scope) => {
      await protectOperatorRoutes(scope, config.auth);
      scope.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
    });
    const url = await metricsServer.listen({ port: config.server.metrics_port, host: open ? '127.0.0.1' : (config.server.host ?? '0.0.0.0') });
    runtime.metricsUrl = `${url}/metrics`;
    log.info({ url: runtime.metricsUrl }, 'worker metrics listening');
  }

  /**
   * Each step is bounded: with Redis gone, BullMQ's closes and ioredis' QUIT would wait for it for
   * ever, and one stuck step must not keep the rest (closing the listener above all) from running.
   */
  const step = async (name: string, fn: () => Promise<unknown>, boundMs = STEP_BOUND_MS) => {
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      fn().then(() => true, (err: unknown) => (log.warn({ step: name, err: (err as Error).message }, 'shutdown step failed'), true)),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), boundMs))),
    ]);
    clearTimeout(timer);
    if (!done) log.warn({ step: name, after_ms: boundMs }, 'shutdown step did not finish in time; going on');
  };
  runtime.close = async () => {
    await step('worker metrics', async () => metricsServer?.close());
    // Stop intake first, then let in-flight hops finish, then drop connections.
    await step('api', async () => runtime.api?.close(), STEP_BOUND_MS + 5_000);
    await step('events', async () => events?.close());
    await step('stream relay', async () => hub?.close());
    await step('worker pools', async () => runtime.pool?.close(), config.workers.shutdown_grace_ms + STEP_BOUND_MS);
    await step('routing statistics', async () => stats?.close());
    // The rest is independent, and each part may be waiting on the same lost Redis: one bound for all.
    await Promise.all([
      step('webhook sender', async () => sender?.close()),
      step('batch worker', async () => {
        await batchRunner.close();
        await batchSteps.close();
      }),
      step('webhook queue', () => webhooks.close()),
      step('provider clients', () => Promise.all([...(clients?.values() ?? [])].map((c) => c.close()))),
      step('deadlines', () => deadlines.close()),
      step('breakers', () => breakers.close()),
      step('routing state', async () => routingState.stop()),
      step('queues', () => queues.close()),
      ...closers.map((close) => step('mock provider', close)),
    ]);
    const connections = [storeRedis, bullRedis, ...(workerRedis ? [workerRedis] : [])];
    await step('redis', () => Promise.all(connections.map((r) => r.quit().catch(() => {}))), COMMAND_TIMEOUT_MS);
    for (const r of connections) r.disconnect();
  };
  return runtime;
}

/**
 * The configured batch webhooks are checked as a job's webhook_url is at intake, now rather than
 * when the first batch ends and its event silently goes nowhere: one the policy refuses stops
 * start-up; one whose host does not resolve right now is only warned about.
 */
async function checkBatchWebhooks(config: Config, policy: TargetPolicy, log: Logger): Promise<void> {
  const urls: [string, string | undefined][] = [
    ...config.auth.api_keys.map((k, i): [string, string | undefined] => [`auth.api_keys.${i}.webhook_url`, k.webhook_url]),
    ['webhooks.batch_url', config.webhooks.batch_url],
  ];
  for (const [path, url] of urls) {
    if (!url) continue;
    try {
      await policy.check(url);
    } catch (err) {
      if (!(err instanceof TargetRefused)) throw err;
      if (err.kind === 'unresolvable') log.warn({ path, err: err.message }, 'a batch webhook does not resolve now; its events will fail until it does');
      else throw new ConfigError(`config error at ${path}: webhook refused: ${err.message}`);
    }
  }
}

export type { Redis };
