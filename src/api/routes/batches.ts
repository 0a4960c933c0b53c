import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type BatchRecord, batchLeaseMs, toPublicBatch } from '../../batches/batch-store.js';
import { apiError } from '../errors.js';

/** OpenAI-compatible /v1/batches: create, retrieve, cancel, list. */
export const batchesRoutes: FastifyPluginAsyncZod = async (app) => {
  const { files, batches, batchSteps, auth, config, intake } = app.services;
  app.addHook('onRequest', auth.hook);
  const notFound = (id: string) => apiError('not_found_error', `no batch ${id}`, 'id', 'batch_not_found');
  const mine = (b: BatchRecord | null, tenant: string) => (b && b.tenant === tenant ? b : null);
  const view = async (id: string, b: BatchRecord) => toPublicBatch(id, b, b.webhook_url ? await batches.webhookAttempts(id) : []);

  app.post(
    '/batches',
    {
      schema: {
        body: z.strictObject({
          input_file_id: z.string().min(1),
          endpoint: z.literal('/v1/chat/completions', { error: 'only /v1/chat/completions batches are supported' }),
          completion_window: z.literal('24h', { error: 'completion_window must be "24h"' }),
          // OpenAI's own bound: 16 pairs, keys up to 64 and values up to 512 characters.
          metadata: z
            .record(z.string().max(64), z.string().max(512))
            .refine((m) => Object.keys(m).length <= 16, 'at most 16 metadata pairs')
            .nullable()
            .optional(),
        }),
      },
    },
    async (request, reply) => {
      const { input_file_id, endpoint, completion_window, metadata } = request.body;
      const file = await files.get(input_file_id, request.tenant);
      if (!file) return reply.code(400).send(apiError('invalid_request_error', `no file ${input_file_id}`, 'input_file_id', 'file_not_found'));
      if (file.purpose !== 'batch') return reply.code(400).send(apiError('invalid_request_error', `file ${input_file_id} has purpose ${file.purpose}, not batch`, 'input_file_id', 'invalid_purpose'));
      // Its lines are jobs like any other: admitted against the tenant's limits now, as a whole
      // (its spend once its lines are read), rather than let in whatever the limits say.
      const id = batches.newId(request.tenant);
      const windowMs = config.batches.completion_window_ms;
      await intake.admitBatch(request.tenant, id, await files.lineCount(input_file_id), batchLeaseMs(Date.now() + windowMs));
      await batches.create({ id, tenant: request.tenant, inputFileId: input_file_id, endpoint, window: completion_window, windowMs, metadata: metadata ?? null });
      await batchSteps.schedule('start', id);
      return view(id, (await batches.get(id))!);
    },
  );

  app.get('/batches/:id', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const b = mine(await batches.get(request.params.id), request.tenant);
    return b ? view(request.params.id, b) : reply.code(404).send(notFound(request.params.id));
  });

  app.post('/batches/:id/cancel', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const { id } = request.params;
    const b = mine(await batches.get(id), request.tenant);
    if (!b) return reply.code(404).send(notFound(id));
    const moved = await batches.move(id, ['validating', 'in_progress'], 'cancelling', 'cancelling_at');
    if (moved.moved) {
      // While the start step still makes jobs it hands over to the cancel itself, when it stops.
      if (moved.startDone) await batchSteps.schedule('cancel', id);
    } else if (moved.previous !== 'cancelling' && moved.previous !== 'cancelled') {
      return reply.code(409).send(apiError('conflict_error', `batch ${id} is ${moved.previous} and cannot be cancelled`, 'id', 'batch_not_cancellable'));
    }
    return view(id, (await batches.get(id))!);
  });

  app.get(
    '/batches',
    { schema: { querystring: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20), after: z.string().optional() }) } },
    async (request) => {
      const { data: records, hasMore } = await batches.list(request.tenant, request.query.limit, request.query.after);
      const data = await Promise.all(records.map(([id, b]) => view(id, b)));
      return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
    },
  );
};
