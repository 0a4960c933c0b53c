import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
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
  /** Unix seconds; null only on files stored before uploads reported it. */
  expires_at: number | null;
}

/** An upload whose lines are in Redis (and its bytes in the tenant's quota) but which is not yet a file anyone can see. */
export interface StagedFile {
  readonly id: string;
  readonly tenant: string;
  readonly filename: string;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  bytes: number;
  /** Lines that are not blank: what a batch would run. */
  nonBlank: number;
}

/** An upload refused for what the client sent; the API answers it with `status` in its error shape. */
export class FileRefusal extends Error {
  constructor(
    readonly status: 400 | 413,
    readonly code: string,
    message: string,
    readonly param: string | null = 'file',
  ) {
    super(message);
  }
}

/** Lines are written and read at most this many at a time, so no file is ever held whole in memory. */
const LINE_CHUNK = 1000;
/** ...and at most about this many bytes of them, whatever the line length. */
const FLUSH_BYTES = 1024 * 1024;
/** The content download starts with few lines per read, so a file of long lines is not read a thousand at once. */
const FIRST_READ_LINES = 16;
const LF = 0x0a;
const CR = 0x0d;
/** Batch output files are bounded by their batch, not by the tenant's upload quota. */
const UNCOUNTED = -1;

export const newFileId = () => `file-${randomBytes(12).toString('base64url')}`;

/** Anything that yields the upload's bytes; a Readable's iterator turns the stream's errors into rejections. */
type ByteSource = AsyncIterable<Buffer | Uint8Array | string>;

/**
 * Batch input and output files, kept in Redis as a list of lines beside a small hash: every API and
 * worker process can read them, and they are streamed in both directions a chunk at a time. Every
 * byte an upload writes is reserved against its tenant's quota first (src/lua/fileQuota.lua), and
 * every key it writes expires with the file, so no failure can leave data that lives forever.
 */
export class FileStore {
  private readonly redis: ScriptClient;
  private readonly ttlS: number;
  readonly maxFileBytes: number;
  readonly maxLineBytes: number;
  private readonly quotas: Map<string, number>;
  private readonly defaultQuota: number;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    config: Pick<Config, 'files' | 'server' | 'auth'>,
  ) {
    this.redis = withScripts(redis);
    this.ttlS = config.files.ttl_s;
    this.maxFileBytes = config.files.max_file_bytes;
    // A batch line is one job, so by default it may be as long as one job's body.
    this.maxLineBytes = config.files.max_line_bytes ?? config.server.body_limit_bytes;
    this.defaultQuota = config.files.tenant_quota_bytes;
    this.quotas = new Map();
    for (const k of config.auth.api_keys) {
      const q = k.limits?.file_quota_bytes;
      if (q !== undefined && !this.quotas.has(k.name)) this.quotas.set(k.name, q);
    }
  }

  quotaFor(tenant: string): number {
    return this.quotas.get(tenant) ?? this.defaultQuota;
  }

  private stage(tenant: string, filename: string): StagedFile {
    const now = Date.now();
    // A whole second, so the expires_at a file reports is the instant its keys expire.
    const expiresAtMs = (Math.floor(now / 1000) + this.ttlS) * 1000;
    return { id: newFileId(), tenant, filename, createdAtMs: now, expiresAtMs, bytes: 0, nonBlank: 0 };
  }

  private quotaKeys(tenant: string, id: string): string[] {
    return [this.keys.fileQuota(tenant), this.keys.fileExpiry(tenant), this.keys.fileIndex(tenant), this.keys.file(id), this.keys.fileLines(id)];
  }

  /** Reserves `bytes` and appends `lines` in one step; refused, nothing is appended. */
  private async reserve(staged: StagedFile, lines: string[], bytes: number, quota: number): Promise<void> {
    const [ok, used] = (await this.redis.fileQuota(...this.quotaKeys(staged.tenant, staged.id), 'reserve', staged.id, Date.now(), staged.expiresAtMs, bytes, quota, ...lines)) as [number, number];
    if (ok === 1) {
      staged.bytes += bytes;
      return;
    }
    throw new FileRefusal(
      413,
      'file_quota_exceeded',
      `this upload would take tenant ${staged.tenant}'s files past its quota of ${quota} bytes: ${used} bytes are held now (this upload's first ${staged.bytes} included); ` +
        'delete files (DELETE /v1/files/{id}) or wait for them to expire',
    );
  }

  /**
   * Streams an upload into Redis line by line, as it arrives, keeping the file's own line numbering:
   * a blank line is stored as an empty string (so a batch's errors name the lines the client sees), a
   * final newline ends the last line rather than starting an empty one, CRLF counts as LF and a UTF-8
   * BOM at the start is dropped. Memory is bounded by the line cap, not by the line or the file.
   * Refused or failed, whatever was written is deleted and its quota released before this throws.
   * The result is staged: `publish` makes it a file, `discard` drops it.
   */
  async upload(tenant: string, filename: string, source: ByteSource): Promise<StagedFile> {
    const staged = this.stage(tenant, filename);
    try {
      await this.take(staged, source);
      return staged;
    } catch (err) {
      // Should this fail too (Redis gone), the keys still expire and the ledger prunes the entry then.
      await this.discard(staged).catch(() => {});
      throw err;
    }
  }

  private async take(staged: StagedFile, source: ByteSource): Promise<void> {
    const { maxFileBytes, maxLineBytes } = this;
    const quota = this.quotaFor(staged.tenant);
    let received = 0;
    /** The line being read, in pieces, never longer than the cap (plus a CR). */
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let lineNo = 0;
    let batch: string[] = [];
    let batchBytes = 0;

    const tooLong = () => new FileRefusal(413, 'line_too_long', `line ${lineNo + 1} is longer than ${maxLineBytes} bytes, the limit on one line (one job's body)`);
    /** A whole line, its LF already cut off; `raw` is the bytes it took in the upload, LF included. */
    const line = (bytes: Buffer, raw: number) => {
      const end = bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
      if (end > maxLineBytes) throw tooLong();
      let text = bytes.toString('utf8', 0, end);
      if (lineNo === 0 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      lineNo++;
      if (text.trim() === '') text = '';
      else staged.nonBlank++;
      batch.push(text);
      batchBytes += raw;
    };
    const flush = async () => {
      const lines = batch;
      const bytes = batchBytes;
      batch = [];
      batchBytes = 0;
      await this.reserve(staged, lines, bytes, quota);
    };

    for await (const piece of refusingOnError(source)) {
      const chunk = typeof piece === 'string' ? Buffer.from(piece) : Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      received += chunk.length;
      if (received > maxFileBytes) throw new FileRefusal(413, 'file_too_large', `files are limited to ${maxFileBytes} bytes`);
      let start = 0;
      for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, start)) {
        const tail = chunk.subarray(start, lf);
        if (pendingBytes + tail.length > maxLineBytes + 1) throw tooLong();
        line(pendingBytes === 0 ? tail : Buffer.concat([...pending, tail]), pendingBytes + tail.length + 1);
        pending = [];
        pendingBytes = 0;
        start = lf + 1;
        if (batch.length >= LINE_CHUNK || batchBytes >= FLUSH_BYTES) await flush();
      }
      const rest = chunk.subarray(start);
      if (rest.length > 0) {
        // Refused here, the rest of a long line is never buffered.
        if (pendingBytes + rest.length > maxLineBytes + 1) throw tooLong();
        pending.push(rest);
        pendingBytes += rest.length;
      }
    }
    if (pendingBytes > 0) line(Buffer.concat(pending), pendingBytes);
    // Always once, even for an empty file: publishing needs the ledger entry.
    await flush();
  }

  /** Makes a staged upload a file its tenant can see and run a batch from. */
  async publish(staged: StagedFile, purpose: string): Promise<FileObject> {
    const file: FileObject = {
      id: staged.id,
      object: 'file',
      bytes: staged.bytes,
      created_at: Math.floor(staged.createdAtMs / 1000),
      filename: staged.filename,
      purpose,
      status: 'processed',
      status_details: null,
      expires_at: Math.floor(staged.expiresAtMs / 1000),
    };
    const ok = await this.redis.fileQuota(...this.quotaKeys(staged.tenant, staged.id), 'publish', staged.id, Date.now(), staged.tenant, JSON.stringify(file), staged.nonBlank, staged.createdAtMs);
    if (ok !== 1) throw new Error(`upload ${staged.id} lost its ledger entry before it was published (its TTL passed, or it was discarded)`);
    return file;
  }

  /** Drops a staged upload: its lines and its hold on the quota. */
  async discard(staged: StagedFile): Promise<void> {
    await this.redis.fileQuota(...this.quotaKeys(staged.tenant, staged.id), 'release', staged.id, Date.now(), '');
  }

  /** Deletes one of the tenant's files and frees its quota; false when the tenant has no such file. */
  async delete(id: string, tenant: string): Promise<boolean> {
    return (await this.redis.fileQuota(...this.quotaKeys(tenant, id), 'release', id, Date.now(), tenant)) === 1;
  }

  /** A file the broker writes (batch output and errors), from an async source of lines; not counted against the upload quota. */
  async write(tenant: string, filename: string, purpose: string, lines: AsyncIterable<string[]>): Promise<FileObject | null> {
    const staged = this.stage(tenant, filename);
    try {
      for await (const chunk of lines) {
        for (let i = 0; i < chunk.length; i += LINE_CHUNK) {
          const part = chunk.slice(i, i + LINE_CHUNK);
          staged.nonBlank += part.filter((l) => l.trim() !== '').length;
          await this.reserve(staged, part, part.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0), UNCOUNTED);
        }
      }
      if (staged.bytes === 0) {
        await this.discard(staged);
        return null;
      }
      return await this.publish(staged, purpose);
    } catch (err) {
      await this.discard(staged).catch(() => {});
      throw err;
    }
  }

  async get(id: string, tenant: string): Promise<FileObject | null> {
    const [owner, json] = await this.redis.hmget(this.keys.file(id), 'tenant', 'json');
    return owner === tenant && json ? (JSON.parse(json) as FileObject) : null;
  }

  /** Lines that are not blank (what a batch runs); blank lines are stored too, to keep the numbering. */
  async lineCount(id: string): Promise<number> {
    const counted = await this.redis.hget(this.keys.file(id), 'lines');
    // Files stored before blank lines were kept have no count, and no blank lines either.
    return counted === null ? this.redis.llen(this.keys.fileLines(id)) : Number(counted);
  }

  /** The file's lines in order, blank ones included, a chunk at a time, with the 1-based line number of each chunk's first line. */
  async *chunks(id: string, size = LINE_CHUNK): AsyncGenerator<{ first: number; lines: string[] }> {
    for (let start = 0; ; start += size) {
      const lines = await this.redis.lrange(this.keys.fileLines(id), start, start + size - 1);
      if (lines.length === 0) return;
      yield { first: start + 1, lines };
      if (lines.length < size) return;
    }
  }

  /**
   * The content as a byte stream of JSONL, read lazily. Each read asks for about FLUSH_BYTES of
   * lines, judged from the last read, so long lines are read a few at a time. A Redis failure
   * mid-way fails the stream, which Fastify turns into a cut response, never a crash.
   */
  content(id: string): Readable {
    const key = this.keys.fileLines(id);
    const redis = this.redis;
    return Readable.from(
      (async function* () {
        let size = FIRST_READ_LINES;
        for (let start = 0; ; ) {
          const lines = await redis.lrange(key, start, start + size - 1);
          if (lines.length === 0) return;
          yield `${lines.join('\n')}\n`;
          if (lines.length < size) return;
          start += lines.length;
          const bytes = lines.reduce((n, l) => n + l.length + 1, 0);
          size = Math.max(1, Math.min(LINE_CHUNK, size * 2, Math.floor((size * FLUSH_BYTES) / bytes)));
        }
      })(),
    );
  }

  async list(tenant: string, limit: number, after?: string): Promise<{ data: FileObject[]; hasMore: boolean }> {
    const ids = await pageIds(this.redis, this.keys.fileIndex(tenant), limit, after);
    const files = await Promise.all(ids.slice(0, limit).map((id) => this.get(id, tenant)));
    return { data: files.filter((f): f is FileObject => f !== null), hasMore: ids.length > limit };
  }
}

/** The source's own failure (a body cut short, a malformed multipart, a client gone) is the client's: a 400, not a 500. */
async function* refusingOnError(source: ByteSource): AsyncGenerator<Buffer | Uint8Array | string> {
  try {
    for await (const piece of source) yield piece;
  } catch (err) {
    throw new FileRefusal(400, 'invalid_upload', `the upload was cut short or malformed: ${(err as Error).message}`);
  }
}
