import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { followJob } from '../../streams/follow-job.js';
import { apiError } from '../errors.js';
import { describedOnly, errors, responses } from '../schemas.js';
import { SseResponse } from '../sse.js';
import { relayStream } from '../stream-relay.js';

/**
 * `GET /v1/jobs/:id/stream`: a job's chunks as Server-Sent Events, from the start or after the chunk
 * named by `Last-Event-ID` (each event's `id:` is its chunk's number), then `[DONE]` or an error
 * event, whichever the job ended in. A caller whose front-door stream dropped picks up here where it
 * was; a job that did not stream (or whose chunks have expired) is told from its completion.
 */
export const jobStreamRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, events, auth, streams, hub } = app.services;
  app.addHook('onRequest', auth.hook);

  app.get(
    '/jobs/:id/stream',
    {
      ...describedOnly,
      schema: {
        params: z.object({ id: z.string().min(1).max(64) }),
        headers: z.looseObject({ 'last-event-id': z.coerce.number().int().nonnegative().optional() }),
        querystring: z.object({ include_usage: z.enum(['true', 'false']).optional() }),
        response: responses({ ...errors(400, 401, 404, 429) }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const job = await store.get(id);
      if (!job || job.tenant !== request.tenant) return reply.code(404).send(apiError('not_found_error', `no job ${id}`, 'id', 'job_not_found'));
      if (!app.held.take(request.tenant, reply, null)) return reply;
      const gone = new AbortController();
      const hungUp = () => gone.abort();
      reply.raw.once('close', hungUp);
      try {
        const after = request.headers['last-event-id'] ?? 0;
        await relayStream(followJob({ hub, streams, events, store }, id, after, gone.signal), new SseResponse(reply), {
          // A replay shows the usage chunk unless asked not to: it is the job's, and costs nothing to send.
          includeUsage: request.query.include_usage !== 'false',
          withIds: true,
          after,
          headers: { 'x-switchyard-job-id': id },
        });
        return reply;
      } finally {
        reply.raw.off('close', hungUp);
        app.held.release(request.tenant);
      }
    },
  );
};
