import type { Redis } from 'ioredis';

/**
 * Terminal-state notifications for long-polling callers. One Redis subscription per process fans out
 * to every local waiter, so a thousand waiting requests cost one connection and no polling.
 */
export class JobEvents {
  private readonly waiters = new Map<string, Set<() => void>>();
  private ready: Promise<unknown> | null = null;

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {
    subscriber.on('message', (_channel: string, id: string) => {
      const set = this.waiters.get(id);
      if (!set) return;
      this.waiters.delete(id);
      for (const wake of set) wake();
    });
  }

  start(): Promise<unknown> {
    this.ready ??= this.subscriber.subscribe(this.channel);
    return this.ready;
  }

  /** Number of requests currently waiting; exposed for tests and metrics. */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  /**
   * Resolves when job `id` publishes a terminal event, after `timeoutMs`, or when `signal` aborts.
   * Callers register before reading the record, then re-read after waking, so no event is missed.
   */
  listen(id: string): { done: Promise<void>; wait(timeoutMs: number, signal?: AbortSignal): Promise<void>; cancel(): void } {
    let wake!: () => void;
    const done = new Promise<void>((resolve) => (wake = resolve));
    let set = this.waiters.get(id);
    if (!set) this.waiters.set(id, (set = new Set()));
    set.add(wake);
    const cancel = () => {
      const current = this.waiters.get(id);
      if (!current) return;
      current.delete(wake);
      if (current.size === 0) this.waiters.delete(id);
      wake();
    };
    const wait = async (timeoutMs: number, signal?: AbortSignal) => {
      const timer = setTimeout(cancel, timeoutMs);
      signal?.addEventListener('abort', cancel, { once: true });
      try {
        await done;
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancel);
        cancel();
      }
    };
    return { done, wait, cancel };
  }

  /** Answers every held request now, with the job as it is (used when the API shuts down). */
  wakeAll(): void {
    for (const set of this.waiters.values()) for (const wake of set) wake();
    this.waiters.clear();
  }

  async close(): Promise<void> {
    this.wakeAll();
    this.subscriber.disconnect();
  }
}
