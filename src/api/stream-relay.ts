import { isTerminal, type JobRecord } from '../store/job-record.js';
import type { ChatCompletion } from '../providers/types.js';
import { chunksFromCompletion } from '../streams/completion-chunks.js';
import type { Followed } from '../streams/follow-job.js';
import { failureAnswer } from './chat-answer.js';
import { apiError } from './errors.js';
import type { SseResponse } from './sse.js';

export interface RelayOptions {
  /** OpenAI's `stream_options.include_usage`: the usage chunk last, and `usage: null` on the others. */
  includeUsage: boolean;
  /** Number each event (`id:`), for a stream that can be resumed with Last-Event-ID. */
  withIds: boolean;
  /** The chunk the caller already has (a resume). */
  after: number;
  headers: Record<string, string>;
  /**
   * A job that fails before its first chunk, for a caller that wants an ordinary error answer then
   * (the front door: no stream has begun, so the status can still say what happened).
   */
  failBeforeOpen?: (job: JobRecord) => void;
}

/** A stored chunk as this caller asked for it: usage only when asked, as OpenAI sends it. */
function shape(data: string, includeUsage: boolean): string | null {
  const chunk = JSON.parse(data) as Record<string, unknown> & { choices: unknown[] };
  if (includeUsage) {
    if (!('usage' in chunk)) chunk.usage = null;
    return JSON.stringify(chunk);
  }
  if (chunk.choices.length === 0) return null;
  delete chunk.usage;
  return JSON.stringify(chunk);
}

/**
 * Relays a followed job to an SSE response, as OpenAI streams: its chunks, then `[DONE]` when the
 * job succeeded, or an `{"error": ...}` event when it did not (after which the OpenAI SDK raises).
 * The response opens with the first chunk, so a job that fails before any can still be answered
 * with a status. A succeeded job with no chunks kept (they expired, or it never streamed) is told
 * again from its completion.
 */
export async function relayStream(followed: AsyncGenerator<Followed>, sse: SseResponse, opts: RelayOptions): Promise<void> {
  let seq = opts.after;
  const open = () => {
    if (!sse.opened) sse.open(opts.headers);
  };
  const send = async (data: string, n: number) => {
    const shaped = shape(data, opts.includeUsage);
    if (shaped !== null) await sse.send(shaped, opts.withIds ? n : undefined);
  };
  const fail = async (message: string, code: string) => {
    open();
    await sse.send(JSON.stringify(apiError('server_error', message, null, code)));
    sse.end();
  };
  for await (const step of followed) {
    if (step.kind === 'chunks') {
      open();
      for (const e of step.entries) await send(e.data, (seq = e.seq));
      continue;
    }
    const job = step.job;
    if (!job) return fail('the job no longer exists', 'job_not_found');
    if (!isTerminal(job.status)) {
      return fail(`the broker is shutting down; the job goes on: resume with GET /v1/jobs/${job.id}/stream (Last-Event-ID: ${seq})`, 'server_shutting_down');
    }
    if (job.status !== 'succeeded') {
      if (!sse.opened && opts.failBeforeOpen) return opts.failBeforeOpen(job);
      open();
      await sse.send(JSON.stringify({ error: failureAnswer(job).body.error }));
      return sse.end();
    }
    const streamed = job.attempts.find((a) => a.outcome === 'succeeded')?.stream?.chunks ?? 0;
    if (seq < streamed) {
      // Its chunks have expired (or were trimmed) before this caller had them all; told again
      // from the completion, they would not line up with the chunks it has.
      if (opts.after > 0) return fail(`the chunks of job ${job.id} after ${seq} have expired; its whole answer is at GET /v1/jobs/${job.id}`, 'stream_expired');
    }
    if (seq === 0 && job.result) {
      open();
      for (const chunk of chunksFromCompletion(job.result as ChatCompletion)) await send(JSON.stringify(chunk), ++seq);
    }
    open();
    await sse.send('[DONE]');
    return sse.end();
  }
}
