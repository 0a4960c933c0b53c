import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { jobBodySchema } from '../../intake/job-request.js';
import { isTerminal, JOB_STATUSES, type JobRecord, toPublicJob } from '../../store/job-record.js';
import { apiError } from '../errors.js';
import { describedOnly, errors, jobSchema, listOf, responses } from '../schemas.js';

const MAX_WAIT_S = 60;
const MAX_BULK = 10_000;
const BULK_BODY_LIMIT = 64 * 1024 * 1024;

const idParams = z.object({ id: z.string().min(1).max(64) });

/** The jobs API: submit, read (with long-poll), cancel, list. */
export const jobsRoutes: FastifyPluginAsyncZod = async (app) => {
  const { intake, store, events, auth, webhooks, config } = app.services;
  app.addHook('onRequest', auth.hook);

  /** A job the caller may see; another tenant's job is indistinguishable from a missing one. */
  const visible = (job: JobRecord | null, tenant: string) => (job && job.tenant === tenant ? job : null);
  const notFound = (id: string) => apiError('not_found_error', `no job ${id}`, 'id', 'job_not_found');

  app.post(
    '/jobs',
    {
      ...describedOnly,
      schema: {
        body: jobBodySchema,
        headers: z.looseObject({ 'idempotency-key': z.string().min(1).max(255).optional() }),
        response: responses({ 202: jobSchema.meta({ description: 'Accepted: the job, queued' }), 200: jobSchema.meta({ description: 'The job this Idempotency-Key already created' }), ...errors(400, 401, 402, 413, 415, 422, 429, 503) }),
      },
    },
    async (request, reply) => {
      const { job, replayed } = await intake.submit(request.body, {
        tenant: request.tenant,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return reply
        .code(replayed ? 200 : 202)
        .header('location', `/v1/jobs/${job.id}`)
        .send(toPublicJob(job));
    },
  );

  app.post(
    '/jobs/bulk',
    {
      // Ten thousand jobs of ordinary size do not fit the default body limit.
      bodyLimit: BULK_BODY_LIMIT,
      ...describedOnly,
      schema: {
        body: z.strictObject({ jobs: z.array(jobBodySchema).min(1).max(MAX_BULK) }),
        headers: z.looseObject({ 'idempotency-key': z.string().min(1).max(255).optional() }),
        response: responses({ 202: listOf(jobSchema), ...errors(400, 401, 402, 413, 415, 422, 429, 503) }),
      },
    },
    async (request, reply) => {
      const jobs = await intake.submitMany(request.body.jobs, { tenant: request.tenant, idempotencyKey: request.headers['idempotency-key'] });
      return reply.code(202).send({ object: 'list', data: jobs.map(toPublicJob) });
    },
  );

  app.get(
    '/jobs/:id',
    {
      ...describedOnly,
      schema: {
        params: idParams,
        querystring: z.object({ wait: z.coerce.number().min(0).max(MAX_WAIT_S).optional() }),
        response: responses({ 200: jobSchema, ...errors(400, 401, 404, 429, 503) }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const wait = request.query.wait ?? 0;
      if (wait <= 0) {
        const job = visible(await store.get(id), request.tenant);
        return job ? toPublicJob(job) : reply.code(404).send(notFound(id));
      }
      if (!app.held.take(request.tenant, reply, 'wait')) return reply;
      // Listen before reading, so a terminal event between the read and the wait is not missed.
      const listener = events.listen(id);
      try {
        // Its owner and status only: a job that has not ended is read whole once, when it has.
        const peek = await store.peek(id);
        if (!peek || peek.tenant !== request.tenant) return reply.code(404).send(notFound(id));
        if (!isTerminal(peek.status)) {
          // A caller that hangs up stops the wait. Not an AbortController: aborting one builds a
          // DOMException with its stack, and every answered long-poll closed it.
          const hungUp = () => listener.cancel();
          reply.raw.once('close', hungUp);
          try {
            await listener.wait(wait * 1000);
          } finally {
            reply.raw.off('close', hungUp);
          }
        }
        const job = visible(await store.get(id), request.tenant);
        return job ? toPublicJob(job) : reply.code(404).send(notFound(id));
      } finally {
        listener.cancel();
        app.held.release(request.tenant);
      }
    },
  );

  app.post('/jobs/:id/cancel', { ...describedOnly, schema: { params: idParams, response: responses({ 200: jobSchema, ...errors(401, 404, 409, 503) }) } }, async (request, reply) => {
    const { id } = request.params;
    const job = visible(await store.get(id), request.tenant);
    if (!job) return reply.code(404).send(notFound(id));
    const outcome = await intake.cancel(id);
    if (outcome.kind === 'missing') return reply.code(404).send(notFound(id));
    if (outcome.kind === 'terminal') {
      // Already over, cancelled included: the cancel did nothing, and says so.
      const already = outcome.status === 'expired' ? 'expired' : outcome.status === 'cancelled' ? 'been cancelled' : outcome.status;
      return reply.code(409).send(apiError('conflict_error', `job ${id} has already ${already}`, 'id', 'job_not_cancellable'));
    }
    return toPublicJob((await store.get(id)) ?? job);
  });

  app.post('/jobs/:id/webhook/redeliver', { ...describedOnly, schema: { params: idParams, response: responses({ 202: jobSchema, ...errors(401, 404, 409, 429, 503) }) } }, async (request, reply) => {
    const { id } = request.params;
    const job = visible(await store.get(id), request.tenant);
    if (!job) return reply.code(404).send(notFound(id));
    if (!job.webhook_url) return reply.code(409).send(apiError('conflict_error', `job ${id} has no webhook_url`, 'id', 'no_webhook'));
    if (!isTerminal(job.status)) return reply.code(409).send(apiError('conflict_error', `job ${id} has not finished; its event is sent when it does`, 'id', 'job_not_finished'));
    const outcome = await webhooks.redeliver(job);
    if (outcome.kind === 'pending') {
      return reply.code(409).send(apiError('conflict_error', `a redelivery of job ${id}'s event is still pending; ask again once it has been delivered or given up`, 'id', 'redelivery_pending'));
    }
    if (outcome.kind === 'limited') {
      const message = outcome.scope === 'job'
        ? `job ${id}'s event may be redelivered ${outcome.limit} times an hour; retry in ${outcome.retryAfterS} s`
        : `this tenant may ask for ${outcome.limit} redeliveries a minute; retry in ${outcome.retryAfterS} s`;
      return reply
        .code(429)
        .header('retry-after', String(outcome.retryAfterS))
        .send(apiError('rate_limit_error', message, outcome.scope === 'job' ? 'id' : null, outcome.scope === 'job' ? 'job_redelivery_rate_limited' : 'tenant_redelivery_rate_limited'));
    }
    return reply.code(202).send(toPublicJob((await store.get(id)) ?? job));
  });

  app.get(
    '/jobs',
    {
      ...describedOnly,
      schema: {
        response: responses({ 200: listOf(jobSchema), ...errors(400, 401, 503) }),
        querystring: z.object({
          status: z.enum(JOB_STATUSES).optional(),
          limit: z.coerce.number().int().min(1).max(100).default(20),
          after: z.string().min(1).max(64).optional(),
        }),
      },
    },
    async (request) => {
      const { status, limit, after } = request.query;
      const { jobs, hasMore, cursor } = await store.list(request.tenant, { limit, ...(status && { status }), ...(after && { after }) });
      const data = jobs.map(toPublicJob);
      // A filtered page that stopped at its scan bound names where it stopped, so `after=last_id`
      // goes on from there even when the page holds few or no jobs.
      return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: cursor ?? data.at(-1)?.id ?? null, has_more: hasMore };
    },
  );
};
