import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { IntakeError } from '../intake/intake-error.js';

export interface ApiErrorBody {
  error: { type: string; message: string; param: string | null; code: string | null };
}

export function apiError(type: string, message: string, param: string | null = null, code: string | null = null): ApiErrorBody {
  return { error: { type, message, param, code } };
}

/** `/request/messages/0/role` → `request.messages[0].role`: the path a caller recognises. */
function paramPath(context: string | undefined, instancePath: string, keys?: unknown): string | null {
  const parts = instancePath.split('/').filter(Boolean);
  if (Array.isArray(keys) && keys.length > 0) parts.push(String(keys[0]));
  const path = parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
  if (path) return path;
  return context === 'body' ? null : (context ?? null);
}

const MAX_LISTED = 20;

const STATUS_TYPES: Record<number, string> = {
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  415: 'invalid_request_error',
  429: 'rate_limit_error',
};

/** What ioredis throws when Redis is away: a command timed out, or could not be sent at all. */
function isRedisUnavailable(error: Error & { code?: string }): boolean {
  return (
    error.message === 'Command timed out' ||
    error.message.startsWith("Stream isn't writeable") ||
    error.message === 'Connection is closed.' ||
    error.name === 'MaxRetriesPerRequestError' ||
    error.code === 'ECONNREFUSED'
  );
}

/** Redis cannot be reached: a 503 the client may retry in a moment, never a hang. */
export function unavailable(reply: FastifyReply) {
  return reply.code(503).header('retry-after', '1').send(apiError('service_unavailable', 'the broker cannot reach Redis right now; retry shortly', null, 'redis_unavailable'));
}

/** Every error leaves in one shape, `{"error": {type, message, param, code}}`, with a fitting status. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const issues = error.validation.map((v) => {
        const param = paramPath(error.validationContext, v.instancePath, (v.params as { keys?: unknown }).keys);
        return { param, message: param ? `${param}: ${v.message}` : v.message };
      });
      const first = issues[0]!;
      // A 10,000-item bulk body can fail everywhere; name the first few and count the rest.
      const listed = issues.slice(0, MAX_LISTED).map((i) => i.message).join('; ');
      const more = issues.length > MAX_LISTED ? `; and ${issues.length - MAX_LISTED} more` : '';
      const body = apiError('invalid_request_error', `${listed}${more}`, first.param, 'invalid_value');
      return reply.code(400).send(body);
    }
    if (error instanceof IntakeError) {
      if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
      return reply.code(error.status).send(apiError(error.type, error.message, error.param, error.code));
    }
    if (isRedisUnavailable(error)) return unavailable(reply);
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return reply.code(status).send(apiError(STATUS_TYPES[status] ?? 'invalid_request_error', error.message, null, error.code ?? null));
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.code(500).send(apiError('api_error', 'internal error; the request can be retried'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(apiError('not_found_error', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
