import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { Keys } from '../store/keys.js';
import { pageIds } from '../store/pagination.js';

/** OpenAI's file object. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'processed';
  status_details: null;
  expires_at: number | null;
}

/** Lines are written and read this many at a time, so no file is ever held whole in memory. */
const LINE_CHUNK = 1000;

export const newFileId = () => `file-${randomBytes(12).toString('base64url')}`;

/**
 * Batch input and output files, kept in Redis as a list of lines beside a small hash: every API and
 * worker process can read them, and they are streamed in both directions a chunk at a time.
 */
export class FileStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlMs: number,
  ) {}

  /** Stores an uploaded stream line by line; empty lines are kept out (JSONL has none). */
  async upload(tenant: string, filename: string, purpose: string, stream: Readable): Promise<FileObject> {
    const id = newFileId();
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
    let buffer: string[] = [];
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
      if (line.trim() === '') continue;
      buffer.push(line);
      if (buffer.length === LINE_CHUNK) {
        await this.redis.rpush(this.keys.fileLines(id), ...buffer);
        buffer = [];
      }
    }
    if (buffer.length > 0) await this.redis.rpush(this.keys.fileLines(id), ...buffer);
    return this.finish(tenant, id, filename, purpose, bytes);
  }

  /** A file the broker writes (batch output and errors), from an async source of lines. */
  async write(tenant: string, filename: string, purpose: string, lines: AsyncIterable<string[]>): Promise<FileObject | null> {
    const id = newFileId();
    let bytes = 0;
    for await (const chunk of lines) {
      if (chunk.length === 0) continue;
      bytes += chunk.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
      await this.redis.rpush(this.keys.fileLines(id), ...chunk);
    }
    return bytes === 0 ? null : this.finish(tenant, id, filename, purpose, bytes);
  }

  private async finish(tenant: string, id: string, filename: string, purpose: string, bytes: number): Promise<FileObject> {
    const file: FileObject = { id, object: 'file', bytes, created_at: Math.floor(Date.now() / 1000), filename, purpose, status: 'processed', status_details: null, expires_at: null };
    await this.redis
      .multi()
      .hset(this.keys.file(id), { tenant, json: JSON.stringify(file) })
      .pexpire(this.keys.file(id), this.ttlMs)
      .pexpire(this.keys.fileLines(id), this.ttlMs)
      .zadd(this.keys.fileIndex(tenant), Date.now(), id)
      .exec();
    return file;
  }

  async get(id: string, tenant: string): Promise<FileObject | null> {
    const [owner, json] = await this.redis.hmget(this.keys.file(id), 'tenant', 'json');
    return owner === tenant && json ? (JSON.parse(json) as FileObject) : null;
  }

  async lineCount(id: string): Promise<number> {
    return this.redis.llen(this.keys.fileLines(id));
  }

  /** The file's lines in order, a chunk at a time, with the 1-based line number of each chunk's first line. */
  async *chunks(id: string, size = LINE_CHUNK): AsyncGenerator<{ first: number; lines: string[] }> {
    for (let start = 0; ; start += size) {
      const lines = await this.redis.lrange(this.keys.fileLines(id), start, start + size - 1);
      if (lines.length === 0) return;
      yield { first: start + 1, lines };
      if (lines.length < size) return;
    }
  }

  /** The content as a byte stream of JSONL, read lazily. */
  content(id: string): Readable {
    const chunks = this.chunks(id);
    return Readable.from(
      (async function* () {
        for await (const { lines } of chunks) yield `${lines.join('\n')}\n`;
      })(),
    );
  }

  async list(tenant: string, limit: number, after?: string): Promise<{ data: FileObject[]; hasMore: boolean }> {
    const ids = await pageIds(this.redis, this.keys.fileIndex(tenant), limit, after);
    const files = await Promise.all(ids.slice(0, limit).map((id) => this.get(id, tenant)));
    return { data: files.filter((f): f is FileObject => f !== null), hasMore: ids.length > limit };
  }
}
