import type { JobEvents } from '../store/job-events.js';
import { isTerminal, type JobRecord } from '../store/job-record.js';
import type { JobStore } from '../store/job-store.js';
import type { JobStreams, StreamEntry } from './job-streams.js';
import type { StreamHub } from './stream-hub.js';

export type Followed = { kind: 'chunks'; entries: StreamEntry[] } | { kind: 'end'; job: JobRecord | null };

export interface FollowDeps {
  hub: StreamHub;
  streams: JobStreams;
  events: JobEvents;
  store: JobStore;
}

/**
 * A job's chunks after chunk `after` as they come, then its end. Chunks come from the hub while the
 * job runs; the job's end (its terminal event) is the stream's end, since the worker writes every
 * chunk before it settles the job: one last read after the end finds whatever the hub had not yet
 * passed on. Each chunk is given once, in order, whichever way it arrived. Listening starts before
 * the first read, so neither a chunk nor the end can slip between them.
 */
export async function* followJob(deps: FollowDeps, id: string, after: number, signal: AbortSignal): AsyncGenerator<Followed> {
  const listener = deps.events.listen(id);
  let last = after;
  const pending: StreamEntry[] = [];
  let ended = false;
  let signalled = false;
  let resume: (() => void) | undefined;
  const poke = () => {
    signalled = true;
    resume?.();
  };
  const stop = deps.hub.follow(deps.streams.key(id), after, (entries) => {
    pending.push(...entries);
    poke();
  });
  void listener.done.then(() => {
    ended = true;
    poke();
  });
  signal.addEventListener('abort', poke, { once: true });
  const fresh = (entries: StreamEntry[]) => {
    const out = entries.filter((e) => e.seq > last);
    if (out.length > 0) last = out.at(-1)!.seq;
    return out;
  };
  async function* drain(): AsyncGenerator<Followed> {
    for (;;) {
      const page = fresh(await deps.streams.range(id, last));
      if (page.length === 0) return;
      yield { kind: 'chunks', entries: page };
    }
  }
  try {
    yield* drain();
    const now = await deps.store.get(id);
    if (!now || isTerminal(now.status)) ended = true;
    for (;;) {
      if (signal.aborted) return;
      if (pending.length > 0) {
        const entries = fresh(pending.splice(0));
        if (entries.length > 0) yield { kind: 'chunks', entries };
        continue;
      }
      if (ended) {
        yield* drain();
        yield { kind: 'end', job: await deps.store.get(id) };
        return;
      }
      if (!signalled) await new Promise<void>((resolve) => (resume = resolve));
      resume = undefined;
      signalled = false;
    }
  } finally {
    stop();
    listener.cancel();
    signal.removeEventListener('abort', poke);
  }
}
