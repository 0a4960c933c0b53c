import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import { apiError } from './errors.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** `Authorization: Basic base64(user:password)` split, or null when the header is anything else. */
function basicCredentials(header: string | undefined): { user: string; password: string } | null {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Operator endpoints (Bull Board, /metrics) sit behind `auth.admin`, HTTP Basic, compared in
 * constant time. In dev mode (no API keys and no admin) they are open, as the whole API is, on
 * loopback only; with API keys but no admin they stay shut rather than fall open. Refusals are sent
 * here, in the API's error shape, so no plugin's own error handler (Bull Board has one) rewrites them.
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
  app.addHook('onRequest', async (request, reply) => {
    const given = basicCredentials(request.headers.authorization);
    // Both comparisons always run, so timing says nothing about which part was wrong.
    const userOk = timingSafeEqual(digest(given?.user ?? ''), user);
    const passwordOk = timingSafeEqual(digest(given?.password ?? ''), password);
    if (given && userOk && passwordOk) return;
    return reply
      .code(401)
      .header('www-authenticate', 'Basic realm="switchyard-operators"')
      .send(apiError('authentication_error', given ? 'invalid operator credentials' : 'operator credentials required (HTTP Basic)', null, 'invalid_operator_credentials'));
  });
}
