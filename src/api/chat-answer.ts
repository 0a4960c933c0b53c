import type { JobRecord } from '../store/job-record.js';
import { apiError, type ApiErrorBody } from './errors.js';

export interface FailureAnswer {
  status: number;
  body: ApiErrorBody;
  headers: Record<string, string>;
}

/**
 * A job that did not succeed, as the front door answers it, in OpenAI's error shape so the SDK
 * raises its usual exception: a request no provider would take is a 400; every target failing a
 * 502, or a 503 when none could even be tried (their breakers open); its deadline a 504; a cancel
 * a 409. The broker has already tried every target it could, so a 502 or 504 tells the SDK not to
 * try again itself (`x-should-retry: false`, which the OpenAI SDKs obey).
 */
export function failureAnswer(job: JobRecord): FailureAnswer {
  const id = job.id;
  const error = job.error ?? { type: 'internal_error', message: 'the job ended without an answer' };
  const noRetry = { 'x-should-retry': 'false' };
  if (job.status === 'expired') {
    return { status: 504, headers: noRetry, body: apiError('timeout_error', `job ${id} did not finish before its deadline (x-switchyard-deadline-s): ${error.message}`, null, 'deadline_exceeded') };
  }
  if (job.status === 'cancelled') {
    return { status: 409, headers: noRetry, body: apiError('conflict_error', `job ${id} was cancelled: ${error.message}`, null, 'job_cancelled') };
  }
  if (error.type === 'invalid_request' || error.type === 'context_length_exceeded') {
    return { status: 400, headers: noRetry, body: apiError('invalid_request_error', error.message, error.type === 'context_length_exceeded' ? 'messages' : null, error.type) };
  }
  const calls = job.attempts.filter((a) => a.outcome !== 'retried');
  if (calls.length > 0 && calls.every((a) => a.outcome === 'skipped')) {
    return { status: 503, headers: {}, body: apiError('server_error', `no provider for this model can be called right now: ${error.message}`, null, 'providers_unavailable') };
  }
  if (error.type === 'internal_error') return { status: 500, headers: {}, body: apiError('api_error', error.message, null, 'internal_error') };
  // A stream that broke after it began: one target's failure, which no other target could take over.
  if ((calls.at(-1)?.stream?.chunks ?? 0) > 0 || error.type === 'stream_interrupted') {
    return { status: 502, headers: noRetry, body: apiError('server_error', error.message, null, error.type) };
  }
  return { status: 502, headers: noRetry, body: apiError('server_error', `every provider for this model failed; last: ${error.message}`, null, error.type) };
}
