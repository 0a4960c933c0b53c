import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';

/**
 * What a call listens on to be stopped: undici takes an EventEmitter with `aborted` as a signal.
 * An AbortController and its EventTarget listener cost a call about ten microseconds of CPU (a
 * few per cent of a job's in the worker), and almost no call is ever stopped; `reason` is the
 * AbortError an AbortController would give, so a stopped call reads as it did.
 */
export class CallSignal extends EventEmitter {
  aborted = false;
  reason: unknown;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new DOMException('This operation was aborted', 'AbortError');
    this.emit('abort');
  }
}

/**
 * The provider calls this process has in flight, by job, so that a job ended from outside (the
 * caller cancelled it, its batch was cancelled, its deadline passed) stops its call at once
 * instead of letting it run to the end for nothing. endJob.lua announces such ends of running
 * jobs on one channel; every worker process listens, and the one holding the call aborts it.
 */
export class RunningCalls {
  private readonly calls = new Map<string, Set<CallSignal>>();

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {
    subscriber.on('message', (from: string, id: string) => {
      if (from === channel) this.abort(id);
    });
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(this.channel);
  }

  /** Registers a call of job `id`; its signal aborts when the job is ended elsewhere. */
  track(id: string): { signal: CallSignal; stopped: () => boolean; release: () => void } {
    const signal = new CallSignal();
    let set = this.calls.get(id);
    if (!set) this.calls.set(id, (set = new Set()));
    set.add(signal);
    return {
      signal,
      stopped: () => signal.aborted,
      release: () => {
        const current = this.calls.get(id);
        if (!current) return;
        current.delete(signal);
        if (current.size === 0) this.calls.delete(id);
      },
    };
  }

  private abort(id: string): void {
    for (const signal of this.calls.get(id) ?? []) signal.abort();
  }

  /** Stops every call in flight (shutdown's grace ran out): one signal a call, not two combined per call. */
  abortAll(): void {
    for (const set of this.calls.values()) for (const signal of set) signal.abort();
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
