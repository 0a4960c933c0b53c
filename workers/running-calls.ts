import type { Redis } from 'ioredis';

/**
 * The provider calls this process has in flight, by job, so that a job ended from outside (the
 * caller cancelled it, its batch was cancelled, its deadline passed) stops its call at once
 * instead of letting it run to the end for nothing. endJob.lua announces such ends of running
 * jobs on one channel; every worker process listens, and the one holding the call aborts it.
 */
export class RunningCalls {
  private readonly calls = new Map<string, Set<AbortController>>();

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
  track(id: string): { signal: AbortSignal; stopped: () => boolean; release: () => void } {
    const controller = new AbortController();
    let set = this.calls.get(id);
    if (!set) this.calls.set(id, (set = new Set()));
    set.add(controller);
    return {
      signal: controller.signal,
      stopped: () => controller.signal.aborted,
      release: () => {
        const current = this.calls.get(id);
        if (!current) return;
        current.delete(controller);
        if (current.size === 0) this.calls.delete(id);
      },
    };
  }

  private abort(id: string): void {
    for (const controller of this.calls.get(id) ?? []) controller.abort();
  }

  /** Stops every call in flight (shutdown's grace ran out): one signal a call, not two combined per call. */
  abortAll(): void {
    for (const set of this.calls.values()) for (const controller of set) controller.abort();
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
