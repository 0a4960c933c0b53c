import type { FastifyPluginAsync } from 'fastify';

/** Liveness and readiness for load balancers and orchestrators; no auth, no secrets. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  const { redis } = app.services;
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    try {
      await redis.ping();
      return { status: 'ready', redis: 'ok' };
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', redis: (err as Error).message });
    }
  });
};
