import type { Redis } from 'ioredis';
import { type StreamEntry, parseEntries } from './job-streams.js';

interface Follower {
  key: string;
  /** The last chunk this follower has been given. */
  after: number;
  deliver(entries: StreamEntry[]): void;
}

/** How long one blocking read waits before it looks again (it is woken at once when a follower joins). */
const BLOCK_MS = 5000;
const READ_COUNT = 1000;

/**
 * Every stream an API process is relaying, read with one blocking XREAD over all of them on a
 * connection of its own: a thousand open streams cost one connection and no polling. A follower
 * that joins while the read is blocked interrupts it (CLIENT UNBLOCK) so the next read includes
 * its stream. Followers of one job share its read from the earliest of their places.
 */
export class StreamHub {
  private readonly followers = new Set<Follower>();
  private clientId: number | undefined;
  /** Bumped when the set of streams changes; a read issued under an older one is stale. */
  private generation = 0;
  private reading = -1;
  private wake: (() => void) | undefined;
  private closed = false;
  private loop: Promise<void> | undefined;

  constructor(
    /** Used for nothing but the blocking reads: it has no command timeout. */
    private readonly blocking: Redis,
    /** Any other connection, for CLIENT UNBLOCK. */
    private readonly control: Redis,
  ) {
    blocking.on('ready', () => void this.refreshClientId());
  }

  /** Starts delivering chunks of `key` after chunk `after`; returns the function that stops it. */
  follow(key: string, after: number, deliver: (entries: StreamEntry[]) => void): () => void {
    const follower: Follower = { key, after, deliver };
    this.followers.add(follower);
    this.changed();
    return () => {
      this.followers.delete(follower);
      this.changed();
    };
  }

  private changed(): void {
    this.generation++;
    this.loop ??= this.run();
    this.wake?.();
    void this.interrupt();
  }

  private async refreshClientId(): Promise<void> {
    this.clientId = Number(await this.blocking.client('ID'));
  }

  /** Interrupts a read issued before the set of streams changed; repeats until the loop has moved on. */
  private async interrupt(): Promise<void> {
    const target = this.generation;
    for (let tries = 0; tries < 50 && !this.closed && this.reading >= 0 && this.reading < target; tries++) {
      if (this.clientId === undefined) await this.refreshClientId().catch(() => undefined);
      if (this.clientId !== undefined) await this.control.client('UNBLOCK', this.clientId).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      if (this.followers.size === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      const from = new Map<string, number>();
      for (const f of this.followers) from.set(f.key, Math.min(from.get(f.key) ?? Infinity, f.after));
      const keys = [...from.keys()];
      this.reading = this.generation;
      let reply = null as [string, [string, string[]][]][] | null;
      try {
        reply = (await this.blocking.xread('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...keys.map((k) => `0-${from.get(k)}`))) as typeof reply;
      } catch {
        // Redis went away, or the read was cut: look again shortly, with whatever followers remain.
        if (!this.closed) await new Promise((r) => setTimeout(r, 200));
      } finally {
        this.reading = -1;
      }
      for (const [key, raw] of reply ?? []) {
        const entries = parseEntries(raw);
        for (const f of this.followers) {
          if (f.key !== key) continue;
          const fresh = entries.filter((e) => e.seq > f.after);
          if (fresh.length === 0) continue;
          f.after = fresh.at(-1)!.seq;
          f.deliver(fresh);
        }
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.followers.clear();
    this.wake?.();
    this.blocking.disconnect();
    await this.loop?.catch(() => undefined);
  }
}
