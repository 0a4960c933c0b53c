import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import type { JobIntake } from '../intake/job-intake.js';
import { type Logger } from '../log.js';
import type { ProviderQueues } from '../queues/provider-queues.js';
import type { JobEvents } from '../store/job-events.js';
import type { JobStore } from '../store/job-store.js';
import type { ApiKeyAuth } from './auth.js';
import { installErrorHandling } from './errors.js';
import { healthRoutes } from './routes/health.js';
import { jobsRoutes } from './routes/jobs.js';

export interface ApiServices {
  intake: JobIntake;
  store: JobStore;
  events: JobEvents;
  queues: ProviderQueues;
  redis: Redis;
  auth: ApiKeyAuth;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: ApiServices;
  }
}

export interface ApiOptions {
  logger: Logger;
  bodyLimit: number;
}

/** The HTTP API: shared services decorated once on the root, each route group its own plugin. */
export async function buildApi(services: ApiServices, opts: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: opts.bodyLimit,
    disableRequestLogging: true,
    // Long-polls hold a request for up to 60 s; keep idle keep-alive sockets a bit longer than that.
    keepAliveTimeout: 65_000,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('services', services);
  app.decorateRequest('tenant', '');
  installErrorHandling(app);
  await app.register(healthRoutes);
  await app.register(jobsRoutes, { prefix: '/v1' });
  return app;
}
