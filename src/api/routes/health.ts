import type { FastifyPluginAsync } from 'fastify';

const READY_TIMEOUT_MS = 1_000;

/** Liveness and readiness for load balancers and orchestrators; no auth, no secrets. */
export const healthRoutes: FastifyPluginAsync = async (app) => {
  const { redis } = app.services;
  app.get('/healthz', async () => ({ status: 'ok' }));
  // A load balancer asks often and wants an answer now: a Redis that does not reply within a
  // second counts as unreachable, whatever ioredis would still be willing to wait for.
  app.get('/readyz', async (_request, reply) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      if (redis.status !== 'ready') throw new Error(`redis connection is ${redis.status}`);
      await Promise.race([redis.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('redis did not answer within 1 s')), READY_TIMEOUT_MS)))]);
      return { status: 'ready', redis: 'ok' };
    } catch (err) {
      return reply.code(503).header('retry-after', '1').send({ status: 'unavailable', redis: (err as Error).message });
    } finally {
      clearTimeout(timer);
    }
  });
};
