import { setMaxListeners } from 'node:events';
import { ApiError, type BrokerClient, isTerminal, type JobView } from './client.js';
import { type Chunk, chunkKey } from './input.js';
import type { Progress } from './progress.js';
import { count, type ResultLine, type ResultWriter, type Tally } from './results.js';
import { saveState, type SubmitState } from './state.js';

/** Seconds each long-poll holds; well under the usual 60 s idle timeout of proxies in between. */
const POLL_WAIT_S = 30;

export interface PipelineOptions {
  client: BrokerClient;
  chunks: Chunk[];
  sha256: string;
  state: SubmitState;
  statePath: string;
  writer: ResultWriter;
  tally: Tally;
  progress: Progress;
  /** Non-blank lines and job lines, for the progress counts. */
  totals: { lines: number; jobs: number };
  concurrency: number;
  signal: AbortSignal;
}

interface Pending {
  line: number;
  id: string;
  customId?: string | undefined;
}

/** Wakes everything waiting for the pipeline to change: a result, a submitted chunk, the end, an abort. */
class Wakeup {
  private waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}

/**
 * Submits the chunks the state does not record yet and waits for every job line that has no result.
 * Resolves when every line has one; rejects with the first error that stopped it, or with the abort
 * reason once `signal` fires (after the state of every chunk the broker accepted has been saved).
 */
export async function runPipeline(o: PipelineOptions): Promise<void> {
  const pending: Pending[] = [];
  const wakeup = new Wakeup();
  const stop = new AbortController();
  // Each request listens for the abort until its body closes, so the count follows --concurrency (up to
  // twice it, while a waiter's next poll starts before its last body has closed): not a leak to warn of.
  setMaxListeners(0, stop.signal);
  o.signal.throwIfAborted();
  const abort = () => stop.abort(o.signal.reason);
  o.signal.addEventListener('abort', abort, { once: true });
  stop.signal.addEventListener('abort', () => wakeup.notify(), { once: true });
  let outstanding = 0;
  let submitting = true;
  let submitted = Object.values(o.state.chunks).reduce((n, ids) => n + ids.length, 0);

  const report = () =>
    o.progress.update({ total: o.totals.lines, jobs: o.totals.jobs, submitted, done: o.tally.lines.size, failed: o.tally.failed });

  const enqueue = (chunk: Chunk, ids: string[]) => {
    chunk.entries.forEach((entry, i) => {
      if (o.tally.lines.has(entry.line)) return;
      pending.push({ line: entry.line, id: ids[i]!, customId: entry.customId });
      outstanding += 1;
    });
    wakeup.notify();
  };

  const finish = (item: Pending, job: JobView | null) => {
    const result = job ? resultOf(item, job) : missingResult(item);
    o.writer.write(result);
    count(o.tally, result);
    outstanding -= 1;
    report();
    wakeup.notify();
  };

  /**
   * Keeps at most about one chunk (or one round of waiters) queued on the broker beyond what is
   * being awaited: the broker stays busy, yet an interrupted run leaves little running unwatched and
   * a huge file does not land in Redis all at once.
   */
  const aheadLimit = Math.max(o.state.chunk, o.concurrency);

  const submitAll = async () => {
    for (const chunk of o.chunks) {
      if (o.state.chunks[chunk.firstLine] !== undefined) continue;
      while (outstanding >= aheadLimit && !stop.signal.aborted) await wakeup.wait();
      stop.signal.throwIfAborted();
      const ids = await submitChunk(o.client, chunk, chunkKey(o.state, chunk), stop.signal);
      o.state.chunks[chunk.firstLine] = ids;
      // Recorded before any of these jobs is awaited, so a resumed run finds them without re-posting.
      await saveState(o.statePath, o.state);
      submitted += ids.length;
      enqueue(chunk, ids);
      report();
    }
  };

  const awaitAll = async () => {
    for (;;) {
      const item = pending.shift();
      if (item) {
        finish(item, await awaitJob(o.client, item.id, stop.signal));
        continue;
      }
      if (!submitting) return;
      stop.signal.throwIfAborted();
      await wakeup.wait();
    }
  };

  for (const chunk of o.chunks) {
    const ids = o.state.chunks[chunk.firstLine];
    if (ids) enqueue(chunk, ids);
  }
  report();
  const fail = (err: unknown) => {
    stop.abort(err);
    throw err;
  };
  const submitter = submitAll()
    .catch(fail)
    .finally(() => {
      submitting = false;
      wakeup.notify();
    });
  const waiters = Array.from({ length: o.concurrency }, () => awaitAll().catch(fail));
  const outcomes = await Promise.allSettled([submitter, ...waiters]);
  o.signal.removeEventListener('abort', abort);
  // The first cause, not the aborts it set off in the other loops.
  if (stop.signal.aborted) throw stop.signal.reason;
  const failed = outcomes.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

async function submitChunk(client: BrokerClient, chunk: Chunk, key: string, signal: AbortSignal): Promise<string[]> {
  try {
    const jobs = await client.submitChunk(chunk.entries.map((e) => e.body), key, signal);
    return jobs.map((j) => j.id);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    // The broker names items by their index in the request; the user knows them by line.
    const message = err.message.replace(/jobs\[(\d+)\]/g, (all, i: string) => {
      const entry = chunk.entries[Number(i)];
      return entry ? `line ${entry.line}` : all;
    });
    throw new ApiError(err.status, `the broker refused the chunk starting at line ${chunk.firstLine} (${err.status}): ${message}`);
  }
}

async function awaitJob(client: BrokerClient, id: string, signal: AbortSignal): Promise<JobView | null> {
  for (;;) {
    const job = await client.getJob(id, POLL_WAIT_S, signal);
    if (!job || isTerminal(job)) return job;
  }
}

function resultOf(item: Pending, job: JobView): ResultLine {
  return {
    line: item.line,
    ...(item.customId !== undefined && { custom_id: item.customId }),
    id: job.id,
    status: job.status,
    result: job.result ?? null,
    usage: job.usage ?? null,
    cost_usd: job.cost_usd ?? null,
    error: job.error ?? null,
  };
}

/** A recorded job the broker no longer has: its record outlived retention (or the broker's Redis was reset). */
function missingResult(item: Pending): ResultLine {
  return {
    line: item.line,
    ...(item.customId !== undefined && { custom_id: item.customId }),
    id: item.id,
    status: 'failed',
    result: null,
    usage: null,
    cost_usd: null,
    error: { type: 'not_found', message: `the broker no longer has job ${item.id}` },
  };
}
