import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { frontDoorHeaders, toJobBody } from '../../intake/chat-completions.js';
import { IntakeError } from '../../intake/intake-error.js';
import { chatCompletionsBodySchema } from '../../intake/job-request.js';
import { isTerminal, type JobRecord } from '../../store/job-record.js';
import { followJob } from '../../streams/follow-job.js';
import { failureAnswer } from '../chat-answer.js';
import { apiError } from '../errors.js';
import { describedOnly, errors, responses } from '../schemas.js';
import { SseResponse } from '../sse.js';
import { relayStream } from '../stream-relay.js';

/** How long past its deadline a call still waits for the job's end before answering 504 itself. */
const DEADLINE_GRACE_MS = 5_000;

/**
 * The OpenAI-compatible front door, `POST /v1/chat/completions`: each call is a job like any other
 * (priority, limits, breakers, fallback, ledger, cost) whose answer is the HTTP response, or with
 * `stream: true` its chunks as Server-Sent Events relayed from whichever worker runs it. A throttled
 * provider makes the call wait in its queue until its deadline, not fail: only the tenant's own
 * limits answer 429 or 402.
 */
export const chatCompletionsRoutes: FastifyPluginAsyncZod = async (app) => {
  const { intake, store, events, auth, config, streams, hub } = app.services;
  app.addHook('onRequest', auth.hook);

  const answerFailure = (reply: FastifyReply, job: JobRecord, headers: Record<string, string>) => {
    const failure = failureAnswer(job);
    return reply.code(failure.status).headers({ ...headers, ...failure.headers }).send(failure.body);
  };

  app.post(
    '/chat/completions',
    {
      ...describedOnly,
      schema: {
        body: chatCompletionsBodySchema,
        headers: frontDoorHeaders,
        response: responses({ ...errors(400, 401, 402, 404, 409, 413, 415, 429, 502, 503, 504) }),
      },
    },
    async (request, reply) => {
      const { job: body, stream } = toJobBody(request.body, request.headers, config.server.sync_deadline_s);
      if (!app.held.take(request.tenant, reply, null)) return reply;
      // A caller who hangs up before its job has started takes it back; a job that has started is
      // finished and kept (it is being paid for), readable at /v1/jobs/<id>.
      const gone = new AbortController();
      const hungUp = () => {
        if (!reply.raw.writableFinished) gone.abort();
      };
      reply.raw.once('close', hungUp);
      try {
        let job: JobRecord;
        try {
          ({ job } = await intake.submit(body, { tenant: request.tenant, idempotencyKey: request.headers['idempotency-key'] }));
        } catch (err) {
          // OpenAI answers an unknown model 404 model_not_found; the SDK raises NotFoundError.
          if (err instanceof IntakeError && err.code === 'unknown_route') throw new IntakeError(404, 'invalid_request_error', err.message, 'model', 'model_not_found');
          throw err;
        }
        const headers = { 'x-switchyard-job-id': job.id };
        const cancelIfQueued = () => void intake.cancel(job.id, { onlyQueued: true, message: 'cancelled: the caller hung up before it started' }).catch(() => undefined);
        if (gone.signal.aborted) cancelIfQueued();
        else gone.signal.addEventListener('abort', cancelIfQueued, { once: true });

        if (stream) {
          const sse = new SseResponse(reply);
          await relayStream(followJob({ hub, streams, events, store }, job.id, 0, gone.signal), sse, {
            includeUsage: stream.includeUsage,
            withIds: false,
            after: 0,
            headers,
            failBeforeOpen: (ended) => void answerFailure(reply, ended, headers),
          });
          return reply;
        }

        const listener = events.listen(job.id);
        try {
          let latest = await store.get(job.id);
          if (latest && !isTerminal(latest.status)) {
            const waitMs = (latest.deadline_at ?? Date.now()) - Date.now() + DEADLINE_GRACE_MS;
            await listener.wait(Math.max(DEADLINE_GRACE_MS, waitMs), gone.signal);
            latest = await store.get(job.id);
          }
          if (!latest) return reply.code(404).headers(headers).send(apiError('not_found_error', `job ${job.id} no longer exists`, null, 'job_not_found'));
          if (latest.status === 'succeeded') return reply.headers(headers).send(latest.result);
          if (isTerminal(latest.status)) return answerFailure(reply, latest, headers);
          // Not over: the server is shutting down (or the deadline's expiry is late). The job goes on.
          return reply
            .code(503)
            .headers({ ...headers, 'retry-after': '1' })
            .send(apiError('server_error', `job ${job.id} is still ${latest.status}; its answer will be at GET /v1/jobs/${job.id}`, null, 'answer_not_ready'));
        } finally {
          listener.cancel();
        }
      } finally {
        reply.raw.off('close', hungUp);
        app.held.release(request.tenant);
      }
    },
  );
};
