import multipart, { type Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FileRefusal, type StagedFile } from '../../batches/file-store.js';
import { apiError } from '../errors.js';

/** An upload is `purpose`, `file`, and perhaps a few fields the openai SDK adds; nothing needs more. */
const MAX_PARTS = 20;
const MAX_FIELDS = 10;
const MAX_FIELD_BYTES = 4096;
const MAX_PART_HEADERS = 20;
/** After a refusal mid-body, how long the rest of the body is read and dropped before the connection is cut. */
const LINGER_MS = 5_000;

const NOT_MULTIPART = 'send the file as multipart/form-data with fields "purpose" and "file"';

/** @fastify/multipart's errors (FastifyError codes), each as the 4xx it is. */
const MULTIPART_ERRORS: Record<string, { status: 400 | 413; code: string; message: string }> = {
  FST_PARTS_LIMIT: { status: 413, code: 'too_many_parts', message: `a file upload has at most ${MAX_PARTS} parts` },
  FST_FILES_LIMIT: { status: 400, code: 'too_many_files', message: 'send one "file" part per upload' },
  FST_FIELDS_LIMIT: { status: 413, code: 'too_many_fields', message: `a file upload has at most ${MAX_FIELDS} fields` },
  FST_PROTO_VIOLATION: { status: 400, code: 'invalid_field_name', message: 'a part is named like an Object property (__proto__, constructor, ...)' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { status: 400, code: 'not_multipart', message: NOT_MULTIPART },
  FST_INVALID_JSON_FIELD_ERROR: { status: 400, code: 'invalid_field', message: 'a field declared application/json is not valid JSON' },
  FST_MP_PREMATURE_CLOSE: { status: 400, code: 'upload_interrupted', message: 'the request ended before the multipart body did' },
};

/** Anything the multipart parser throws is about the body the client sent; busboy's own errors are plain Errors. */
function multipartRefusal(err: unknown, maxFileBytes: number): FileRefusal {
  const code = (err as { code?: unknown }).code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return new FileRefusal(413, 'file_too_large', `files are limited to ${maxFileBytes} bytes`);
  const known = typeof code === 'string' ? MULTIPART_ERRORS[code] : undefined;
  if (known) return new FileRefusal(known.status, known.code, known.message, null);
  return new FileRefusal(400, 'invalid_multipart', `malformed multipart body: ${(err as Error).message ?? String(err)}`, null);
}

const badPurpose = (purpose: string | undefined) => new FileRefusal(400, 'invalid_purpose', `purpose must be "batch" (got ${JSON.stringify(purpose ?? null)})`, 'purpose');

/**
 * Refused mid-body, the client may still be sending. Its remaining bytes are read and dropped (no
 * memory held) so it can read the answer rather than have its socket reset under it, but only for
 * LINGER_MS: a client that keeps sending is then cut off.
 */
function dropRestOfBody(request: FastifyRequest): void {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return;
  raw.unpipe();
  raw.resume();
  const timer = setTimeout(() => raw.socket?.destroy(), LINGER_MS);
  timer.unref();
  const stop = () => clearTimeout(timer);
  raw.once('end', stop);
  raw.once('close', stop);
}

/** OpenAI-compatible /v1/files: upload (multipart, purpose=batch), read, content, list, delete. */
export const filesRoutes: FastifyPluginAsyncZod = async (app) => {
  const { files, auth } = app.services;
  app.addHook('onRequest', auth.hook);
  await app.register(multipart, {
    limits: {
      // One byte past the cap reaches the store, which refuses the file; busboy drops the rest unread.
      fileSize: files.maxFileBytes + 1,
      files: 1,
      fields: MAX_FIELDS,
      fieldSize: MAX_FIELD_BYTES,
      parts: MAX_PARTS,
      headerPairs: MAX_PART_HEADERS,
    },
  });
  const notFound = (id: string) => apiError('not_found_error', `no file ${id}`, 'id', 'file_not_found');

  app.post(
    '/files',
    {
      // The body is read as a stream of parts by the handler; this schema is for the document only.
      validatorCompiler: () => () => true,
      schema: {
        consumes: ['multipart/form-data'],
        body: z.object({ purpose: z.literal('batch'), file: z.string().meta({ format: 'binary', description: 'the JSONL file' }) }),
      },
    },
    async (request, reply) => {
    if (!request.isMultipart()) return reply.code(400).send(apiError('invalid_request_error', NOT_MULTIPART, 'file', 'not_multipart'));
    let purpose: string | undefined;
    let staged: StagedFile | undefined;
    const parts = request.parts();
    try {
      for (;;) {
        let next: IteratorResult<Multipart>;
        try {
          next = await parts.next();
        } catch (err) {
          throw multipartRefusal(err, files.maxFileBytes);
        }
        if (next.done) break;
        const part = next.value;
        if (part.type === 'field') {
          if (part.fieldname !== 'purpose') continue;
          purpose = part.valueTruncated ? `${String(part.value)}...` : String(part.value);
          // The openai SDK may send the file first; sent first, a wrong purpose stores nothing.
          if (purpose !== 'batch') throw badPurpose(purpose);
          continue;
        }
        // Streamed into Redis line by line as it arrives; never held whole.
        staged = await files.upload(request.tenant, part.filename || 'upload.jsonl', part.file);
      }
      if (!staged) throw new FileRefusal(400, 'missing_file', 'missing the "file" part');
      if (purpose !== 'batch') throw badPurpose(purpose);
      return await files.publish(staged, purpose);
    } catch (err) {
      if (staged) await files.discard(staged).catch((e: unknown) => request.log.warn({ err: e, file: staged?.id }, 'could not discard a refused upload; its keys expire with its TTL'));
      dropRestOfBody(request);
      if (!(err instanceof FileRefusal)) throw err;
      const type = err.status === 413 ? 'request_too_large' : 'invalid_request_error';
      return reply.code(err.status).send(apiError(type, err.message, err.param, err.code));
    } finally {
      await parts.return?.(undefined).catch(() => {});
    }
  },
  );

  app.get('/files/:id', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const file = await files.get(request.params.id, request.tenant);
    return file ?? reply.code(404).send(notFound(request.params.id));
  });

  app.delete('/files/:id', { schema: { params: z.object({ id: z.string() }) } }, async (request, reply) => {
    const deleted = await files.delete(request.params.id, request.tenant);
    return deleted ? { id: request.params.id, object: 'file', deleted: true } : reply.code(404).send(notFound(request.params.id));
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
