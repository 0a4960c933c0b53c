import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { BatchStore } from '../batches/batch-store.js';
import type { FileStore } from '../batches/file-store.js';
import type { Config } from '../config/schema.js';
import type { WebhookQueue } from '../delivery/webhook-queue.js';
import type { JobIntake } from '../intake/job-intake.js';
import { type Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { BatchSteps } from '../queues/batch-steps.js';
import type { DeadlineQueue } from '../queues/deadline-queue.js';
import type { ProviderQueues } from '../queues/provider-queues.js';
import type { BreakerBoard } from '../resilience/breaker-board.js';
import type { RateBudgets } from '../resilience/rate-budget.js';
import type { JobEvents } from '../store/job-events.js';
import type { JobStore } from '../store/job-store.js';
import type { JobStreams } from '../streams/job-streams.js';
import type { StreamHub } from '../streams/stream-hub.js';
import type { ApiKeyAuth } from './auth.js';
import { installErrorHandling, unavailable } from './errors.js';
import { HeldRequests } from './held-requests.js';
import { guardLoopback } from './loopback-guard.js';
import { adminRoutes } from './routes/admin.js';
import { batchesRoutes } from './routes/batches.js';
import { chatCompletionsRoutes } from './routes/chat-completions.js';
import { jobStreamRoutes } from './routes/job-stream.js';
import { modelsRoutes } from './routes/models.js';
import { filesRoutes } from './routes/files.js';
import { healthRoutes } from './routes/health.js';
import { jobsRoutes } from './routes/jobs.js';
import { metricsRoutes } from './routes/metrics.js';
import { providersRoutes } from './routes/providers.js';
import type { RoutingState } from '../routing/routing-state.js';

export interface ApiServices {
  intake: JobIntake;
  store: JobStore;
  events: JobEvents;
  queues: ProviderQueues;
  redis: Redis;
  auth: ApiKeyAuth;
  breakers: BreakerBoard;
  budgets: RateBudgets;
  /** Health, latencies, leases and spend as routing sees them. */
  routing: RoutingState;
  config: Config;
  webhooks: WebhookQueue;
  files: FileStore;
  batches: BatchStore;
  batchSteps: BatchSteps;
  deadlines: DeadlineQueue;
  metrics: Metrics;
  /** Streaming jobs' chunks, and the one blocking reader that relays them to this process's callers. */
  streams: JobStreams;
  hub: StreamHub;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: ApiServices;
    /** Requests held open waiting on a job, per tenant, in this process. */
    held: HeldRequests;
  }
}

export interface ApiOptions {
  logger: Logger;
  bodyLimit: number;
}

const DRAIN_LIMIT_MS = 5_000;
/** Long enough for a 200 MB upload over a slow link; the answer's own time (a long-poll) is not counted. */
const REQUEST_RECEIVE_LIMIT_MS = 300_000;

/**
 * On close, held long-polls are answered with the job as it stands and in-flight requests get up to
 * DRAIN_LIMIT_MS to finish before connections are cut; Fastify answers new requests 503 meanwhile.
 */
function drainOnClose(app: FastifyInstance, events: JobEvents): void {
  let inFlight = 0;
  app.addHook('onRequest', async (_request, reply) => {
    inFlight++;
    reply.raw.once('close', () => inFlight--);
  });
  app.addHook('preClose', async () => {
    events.wakeAll();
    const until = Date.now() + DRAIN_LIMIT_MS;
    while (inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  });
}

/** The HTTP API: shared services decorated once on the root, each route group its own plugin. */
export async function buildApi(services: ApiServices, opts: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.bodyLimit,
    // One line per job attempt is logged by the workers; a line per HTTP request would drown it.
    logController: new LogController({ disableRequestLogging: true }),
    // Long-polls hold a request for up to 60 s; keep idle keep-alive sockets a bit longer than that.
    keepAliveTimeout: 65_000,
    // Shutdown drains requests itself (see preClose below), then cuts whatever keep-alive sockets remain.
    forceCloseConnections: true,
    // Receiving a request (an upload above all) may take this long; a client trickling its body
    // holds a socket and, for an upload, its quota reservation no longer than that.
    requestTimeout: REQUEST_RECEIVE_LIMIT_MS,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // The API speaks JSON only; any other body is a 415, not a string that fails validation oddly.
  app.removeContentTypeParser('text/plain');
  app.decorate('services', services);
  app.decorate('held', new HeldRequests(services.config.server.max_waiting_per_tenant));
  app.decorateRequest('tenant', '');
  installErrorHandling(app);
  if (services.auth.devMode) guardLoopback(app);
  // With Redis known to be away, every route that needs it answers 503 at once instead of waiting
  // for a command to time out; liveness, readiness (which says so itself) and the docs stay served.
  app.addHook('onRequest', async (request, reply) => {
    if (services.redis.status === 'ready') return;
    const path = request.url;
    if (path === '/healthz' || path === '/readyz' || path.startsWith('/docs')) return;
    return unavailable(reply);
  });
  // The OpenAPI document is generated from the same zod schemas that validate requests.
  await app.register(swagger, {
    openapi: {
      info: { title: 'Switchyard', description: 'Asynchronous job broker for LLM calls', version: '1' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  drainOnClose(app, services.events);
  await app.register(healthRoutes);
  await app.register(jobsRoutes, { prefix: '/v1' });
  await app.register(jobStreamRoutes, { prefix: '/v1' });
  await app.register(chatCompletionsRoutes, { prefix: '/v1' });
  await app.register(modelsRoutes, { prefix: '/v1' });
  await app.register(providersRoutes, { prefix: '/v1' });
  await app.register(filesRoutes, { prefix: '/v1' });
  await app.register(batchesRoutes, { prefix: '/v1' });
  await app.register(metricsRoutes);
  await app.register(adminRoutes, { prefix: '/admin' });
  return app;
}
