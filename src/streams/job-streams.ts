import type { Redis } from 'ioredis';
import type { Keys } from '../store/keys.js';

/** One chunk as kept: its number (1-based, the SSE event id a resume names) and its JSON. */
export interface StreamEntry {
  seq: number;
  data: string;
}

/**
 * The chunks of streaming jobs, in Redis: a Stream per job whose entry ids are `0-<n>` for the n-th
 * chunk, so "resume after chunk n" is a range read from `(0-n`. Workers append, whichever API process
 * holds the caller reads. A stream is trimmed to `maxChunks` and expires `ttlMs` after its last
 * chunk; the finished job keeps the completion they add up to, so a replay outlives the stream.
 */
export class JobStreams {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly opts: { ttlMs: number; maxChunks: number },
  ) {}

  key(id: string): string {
    return this.keys.stream(id);
  }

  /** Appends chunks numbered from `firstSeq`, in one round trip. */
  async append(id: string, firstSeq: number, chunks: string[]): Promise<void> {
    if (chunks.length === 0) return;
    const key = this.key(id);
    const batch = this.redis.multi();
    chunks.forEach((data, i) => batch.xadd(key, 'MAXLEN', '~', this.opts.maxChunks, `0-${firstSeq + i}`, 'c', data));
    batch.pexpire(key, this.opts.ttlMs);
    const replies = (await batch.exec()) ?? [];
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
  }

  /** Chunks after chunk `afterSeq`, oldest first, at most `count`. */
  async range(id: string, afterSeq: number, count = 1000): Promise<StreamEntry[]> {
    return parseEntries(await this.redis.xrange(this.key(id), `(0-${afterSeq}`, '+', 'COUNT', count));
  }

  /** How many chunks the job has sent (0 when none, or when its stream has expired). */
  async length(id: string): Promise<number> {
    const last = await this.redis.xrevrange(this.key(id), '+', '-', 'COUNT', 1);
    return last.length > 0 ? seqOf(last[0]![0]) : 0;
  }
}

export const seqOf = (entryId: string) => Number(entryId.slice(entryId.indexOf('-') + 1));

export function parseEntries(raw: [string, string[]][]): StreamEntry[] {
  return raw.map(([entryId, fields]) => ({ seq: seqOf(entryId), data: fields[1] ?? '' }));
}
