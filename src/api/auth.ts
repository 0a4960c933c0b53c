import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/schema.js';
import { apiError } from './errors.js';

export const DEV_TENANT = 'default';

const digest = (key: string) => createHash('sha256').update(key).digest();

/**
 * Bearer API keys, kept only as SHA-256 digests and compared in constant time. With no keys
 * configured the server is in dev mode: every caller is the `default` tenant (and the server binds
 * loopback only, see the API start-up).
 */
export class ApiKeyAuth {
  private readonly keys: { tenant: string; digest: Buffer }[];

  constructor(auth: Config['auth']) {
    this.keys = auth.api_keys.map((k) => ({ tenant: k.name, digest: digest(k.key) }));
  }

  get devMode(): boolean {
    return this.keys.length === 0;
  }

  /** The tenant a bearer token belongs to, or null. Every key is compared, so timing says nothing. */
  tenantFor(header: string | undefined): string | null {
    if (this.devMode) return DEV_TENANT;
    const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
    if (!match) return null;
    const presented = digest(match[1]!.trim());
    let tenant: string | null = null;
    for (const k of this.keys) if (timingSafeEqual(k.digest, presented)) tenant = k.tenant;
    return tenant;
  }

  /** Fastify onRequest hook for the routes that need a caller. */
  hook = async (request: FastifyRequest, reply: FastifyReply) => {
    const tenant = this.tenantFor(request.headers.authorization);
    if (tenant === null) {
      const message = request.headers.authorization ? 'invalid API key' : 'missing API key: send Authorization: Bearer <key>';
      return reply.code(401).header('www-authenticate', 'Bearer').send(apiError('authentication_error', message, null, 'invalid_api_key'));
    }
    request.tenant = tenant;
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string;
  }
}
