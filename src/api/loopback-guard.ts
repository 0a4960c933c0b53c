import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import { apiError } from './errors.js';

/** localhost, *.localhost (RFC 6761: always loopback), 127.0.0.0/8 and ::1, with or without a port. */
export function isLoopbackHost(hostHeader: string): boolean {
  let host = hostHeader.trim().toLowerCase();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) host = bracketed[1]!;
  else host = host.replace(/:\d+$/, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return isIP(host) === 6 && (host === '::1' || host === '0:0:0:0:0:0:0:1');
}

function refusal(request: FastifyRequest): { message: string; code: string } | null {
  const host = request.headers.host;
  // A request with no Host cannot come from a browser; HTTP/1.0 clients may send none.
  if (host !== undefined && !isLoopbackHost(host)) {
    return { message: `dev mode answers only requests addressed to this machine (Host ${JSON.stringify(host)} is not loopback); configure auth.api_keys to serve other names`, code: 'dev_mode_host_refused' };
  }
  const origin = request.headers.origin;
  if (origin !== undefined) {
    let loopback = false;
    try {
      const url = new URL(origin);
      loopback = (url.protocol === 'http:' || url.protocol === 'https:') && isLoopbackHost(url.host);
    } catch {
      // "null" (sandboxed frames, file:// pages) and anything unparseable are cross-site.
    }
    if (!loopback) {
      return { message: `dev mode refuses requests made by web pages from other sites (Origin ${JSON.stringify(origin)})`, code: 'dev_mode_origin_refused' };
    }
  }
  return null;
}

/**
 * In dev mode nothing asks for a key, so the only thing between a developer's broker and any web
 * page their browser opens is the browser's own rules, which let a page POST without CORS
 * ("no-cors") and let a DNS-rebinding page read answers under its own name. Requests that name a
 * non-loopback Host or carry a cross-site Origin are refused before any route sees them.
 */
export function guardLoopback(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const refused = refusal(request);
    if (refused) return reply.code(403).send(apiError('permission_error', refused.message, null, refused.code));
  });
}
