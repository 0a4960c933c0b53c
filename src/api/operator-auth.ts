import { createHash, timingSafeEqual } from 'node:crypto';
import basicAuth from '@fastify/basic-auth';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import { apiError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Operator endpoints (Bull Board, /metrics) sit behind `auth.admin`, HTTP Basic, compared in
 * constant time. In dev mode (no API keys and no admin) they are open, as the whole API is, on
 * loopback only; with API keys but no admin they stay shut rather than fall open.
 */
export async function protectOperatorRoutes(app: FastifyInstance, auth: Config['auth']): Promise<void> {
  const admin = auth.admin;
  if (!admin) {
    if (auth.api_keys.length === 0) return;
    app.addHook('onRequest', async (_request, reply) =>
      reply.code(403).send(apiError('permission_error', 'operator endpoints need auth.admin in the configuration', null, 'admin_not_configured')),
    );
    return;
  }
  const user = digest(admin.user);
  const password = digest(admin.password);
  await app.register(basicAuth, {
    authenticate: { realm: 'switchyard-operators' },
    async validate(u, p) {
      // Both comparisons always run, so timing says nothing about which part was wrong.
      const userOk = timingSafeEqual(digest(u), user);
      const passwordOk = timingSafeEqual(digest(p), password);
      if (!userOk || !passwordOk) return new Error('invalid operator credentials');
    },
  });
  app.addHook('onRequest', app.basicAuth);
}
