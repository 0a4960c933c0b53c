import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { FileObject } from '../../batches/file-store.js';
import { apiError } from '../errors.js';

/** OpenAI caps batch input files at 200 MB. */
const MAX_FILE_BYTES = 200 * 1024 * 1024;

/** OpenAI-compatible /v1/files: upload (multipart, purpose=batch), read, content, list. */
export const filesRoutes: FastifyPluginAsyncZod = async (app) => {
  const { files, auth } = app.services;
  app.addHook('onRequest', auth.hook);
  await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 1, fields: 10 } });
  const notFound = (id: string) => apiError('not_found_error', `no file ${id}`, 'id', 'file_not_found');

  app.post('/files', async (request, reply) => {
    if (!request.isMultipart()) return reply.code(400).send(apiError('invalid_request_error', 'send the file as multipart/form-data with fields "purpose" and "file"', 'file', 'not_multipart'));
    let purpose: string | undefined;
    let file: FileObject | undefined;
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (part.fieldname === 'purpose') purpose = String(part.value);
        continue;
      }
      // Streamed into Redis line by line as it arrives; never held whole.
      file = await files.upload(request.tenant, part.filename || 'upload.jsonl', purpose ?? 'batch', part.file);
      if (part.file.truncated) return reply.code(413).send(apiError('request_too_large', `files are limited to ${MAX_FILE_BYTES} bytes`, 'file', 'file_too_large'));
    }
    if (!file) return reply.code(400).send(apiError('invalid_request_error', 'missing the "file" part', 'file', 'missing_file'));
    if (purpose !== 'batch') return reply.code(400).send(apiError('invalid_request_error', `purpose must be "batch" (got ${JSON.stringify(purpose ?? null)})`, 'purpose', 'invalid_purpose'));
    return { ...file, purpose };
  });

  app.get('/files/:id', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const file = await files.get(request.params.id, request.tenant);
    return file ?? reply.code(404).send(notFound(request.params.id));
  });

  app.get('/files/:id/content', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const file = await files.get(request.params.id, request.tenant);
    if (!file) return reply.code(404).send(notFound(request.params.id));
    return reply.type('application/jsonl').send(files.content(file.id));
  });

  app.get(
    '/files',
    { schema: { querystring: z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100), after: z.string().optional(), purpose: z.string().optional() }) } },
    async (request) => {
      const { data, hasMore } = await files.list(request.tenant, request.query.limit, request.query.after);
      const shown = request.query.purpose ? data.filter((f) => f.purpose === request.query.purpose) : data;
      return { object: 'list', data: shown, first_id: shown[0]?.id ?? null, last_id: shown.at(-1)?.id ?? null, has_more: hasMore };
    },
  );
};
