import { connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore } from '../src/batches/file-store.js';
import { Keys } from '../src/store/keys.js';
import { configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, testRedis, waitFor } from './support/broker.js';

// A real collector, so the memory check measures what is live rather than what the GC has not reached yet.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Heap and buffers still reachable; V8 frees buffers' memory after a collection, not during it, so this waits a moment for that. */
const live = async () => {
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

const KEYS = {
  alice: 'sy-files-alice-key-0123456789',
  bob: 'sy-files-bob-key-0123456789abc',
  quota: 'sy-files-quota-key-0123456789',
  small: 'sy-files-small-key-0123456789',
  racer: 'sy-files-racer-key-0123456789',
  sdk: 'sy-files-sdk-key-0123456789abc',
};
const MAX_LINE = 256 * 1024;
const MAX_FILE = 600_000;
const QUOTA = 1_000_000;
const SMALL_QUOTA = 150_000;
const TTL_S = 3600;

const BOUNDARY = 'sy-test-boundary-7d1f';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;
const field = (name: string, value: string) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const fileHead = (filename = 'input.jsonl') => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/jsonl\r\n\r\n`;
const CLOSING = `--${BOUNDARY}--\r\n`;
const filePart = (content: string | Buffer, filename?: string) => Buffer.concat([Buffer.from(fileHead(filename)), Buffer.from(content), Buffer.from('\r\n')]);
const form = (...parts: (string | Buffer)[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));

/** `n` JSONL lines of exactly `width` bytes each, newline included. */
const jsonl = (n: number, width = 100) =>
  Array.from({ length: n }, (_, i) => {
    const head = `{"custom_id":"r-${i}","pad":"`;
    return `${head}${'x'.repeat(width - head.length - 3)}"}\n`;
  }).join('');

/** Minimal HTTP/1.1 over a raw socket, for bodies fetch will not send: cut short, aborted, streamed at a chosen pace. */
class RawClient {
  private readonly socket: Socket;
  private received = Buffer.alloc(0);
  readonly closed: Promise<void>;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname);
    this.socket.on('data', (d: Buffer) => (this.received = Buffer.concat([this.received, d])));
    // The server may cut the socket once it has answered; that is not the test's failure.
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  async write(data: string | Buffer): Promise<void> {
    if (this.socket.destroyed) return;
    if (!this.socket.write(data)) await new Promise<void>((resolve) => { this.socket.once('drain', resolve); this.socket.once('close', resolve); });
  }

  /** The first whole response: status and parsed JSON body (by Content-Length). */
  async response(timeoutMs = 15_000): Promise<{ status: number; body: any }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const end = this.received.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = this.received.subarray(0, end).toString();
        const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.received.length >= end + 4 + length) {
          const text = this.received.subarray(end + 4, end + 4 + length).toString();
          return { status: Number(head.split(' ')[1]), body: text ? JSON.parse(text) : null };
        }
      }
      if (this.socket.destroyed && end === -1) throw new Error(`connection closed without a response (got ${JSON.stringify(this.received.toString().slice(0, 200))})`);
      if (Date.now() > until) throw new Error('no response in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const headFor = (url: string, key: string, contentLength: number, contentType = MULTIPART) =>
  `POST /v1/files HTTP/1.1\r\nHost: ${new URL(url).host}\r\nAuthorization: Bearer ${key}\r\nContent-Type: ${contentType}\r\nContent-Length: ${contentLength}\r\n\r\n`;

describe('files: uploads that cannot crash the broker or fill Redis', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let redis: ReturnType<typeof testRedis>;
  let store: FileStore;

  beforeAll(async () => {
    mock = await startMock();
    broker = await startBroker(
      configFor(
        { p: mock },
        {
          auth: {
            api_keys: [
              { name: 'alice', key: KEYS.alice },
              { name: 'bob', key: KEYS.bob },
              { name: 'quota', key: KEYS.quota },
              { name: 'small', key: KEYS.small, limits: { file_quota_bytes: SMALL_QUOTA } },
              { name: 'racer', key: KEYS.racer },
              { name: 'sdk', key: KEYS.sdk },
            ],
          },
          files: { max_file_bytes: MAX_FILE, max_line_bytes: MAX_LINE, tenant_quota_bytes: QUOTA, ttl_s: TTL_S },
        },
      ),
    );
    redis = testRedis();
    // The broker's own store, over a second connection: what a worker process would see.
    store = new FileStore(redis, new Keys(broker.prefix), broker.config);
  });
  afterAll(async () => {
    await broker?.close();
    await mock?.app.close();
    redis?.disconnect();
    if (broker) await dropPrefix(broker.prefix);
  });

  /** Every file key under the broker's prefix (files, lines, indexes, ledgers). */
  const fileKeys = async () => {
    const found: string[] = [];
    for await (const batch of redis.scanStream({ match: `${broker.prefix}:file*`, count: 1000 })) found.push(...(batch as string[]));
    return found.sort();
  };
  const used = async (tenant: string) => Number((await redis.hget(`${broker.prefix}:file-quota:${tenant}`, 'used')) ?? 0);
  const post = async (body: Buffer | string, key = KEYS.alice, contentType = MULTIPART) => {
    const res = await fetch(`${broker.url}/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, body });
    return { status: res.status, body: (await res.json()) as any };
  };
  const upload = (content: string | Buffer, key = KEYS.alice) => post(form(field('purpose', 'batch'), filePart(content), CLOSING), key);
  const del = async (id: string, key = KEYS.alice) => {
    const res = await fetch(`${broker.url}/v1/files/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
    return { status: res.status, body: (await res.json()) as any };
  };
  const alive = async () => {
    expect((await fetch(`${broker.url}/healthz`)).status).toBe(200);
    const ok = await upload(jsonl(2));
    expect(ok.status).toBe(200);
    expect((await del(ok.body.id)).status).toBe(200);
  };
  const expectError = (res: { status: number; body: any }, status: number, code: string | null) => {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    expect(Object.keys(res.body)).toEqual(['error']);
    expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    if (code !== null) expect(res.body.error.code).toBe(code);
  };

  it('answers a multipart body that ends without its closing boundary 400, keeps nothing and stays up', async () => {
    const before = await fileKeys();
    // More than a thousand lines, so some were already written to Redis when the body turned out short.
    const body = form(field('purpose', 'batch'), fileHead(), jsonl(2500, 40));
    const client = new RawClient(broker.url);
    await client.write(headFor(broker.url, KEYS.alice, body.length));
    await client.write(body);
    const res = await client.response();
    client.destroy();
    expectError(res, 400, 'invalid_upload');
    expect(res.body.error.message).toMatch(/cut short or malformed/);
    expect(await fileKeys()).toEqual(before);
    expect(await used('alice')).toBe(0);
    await alive();
  });

  it('answers a body cut short inside a field, or before any part, 400', async () => {
    const before = await fileKeys();
    for (const body of [`--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbat`, `--${BOUNDARY}\r\nContent-Disposition: form-da`]) {
      const client = new RawClient(broker.url);
      await client.write(headFor(broker.url, KEYS.alice, body.length));
      await client.write(body);
      const res = await client.response();
      client.destroy();
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    }
    expect(await fileKeys()).toEqual(before);
    await alive();
  });

  it('answers multipart without a boundary 400', async () => {
    const res = await post(form(field('purpose', 'batch'), filePart(jsonl(2)), CLOSING), KEYS.alice, 'multipart/form-data');
    expectError(res, 400, 'invalid_multipart');
    expect(res.body.error.message).toMatch(/boundary/i);
    await alive();
  });

  it('answers too many fields, parts or files with a 4xx naming the limit, and keeps nothing', async () => {
    const before = await fileKeys();
    const fields = await post(form(...Array.from({ length: 30 }, (_, i) => field(`f${i}`, 'v')), field('purpose', 'batch'), filePart(jsonl(2)), CLOSING));
    expectError(fields, 413, 'too_many_fields');
    // Parts without a Content-Disposition are neither fields nor files: only the parts limit counts them.
    const parts = await post(form(...Array.from({ length: 40 }, () => `--${BOUNDARY}\r\nX-Nothing: 1\r\n\r\nv\r\n`), CLOSING));
    expectError(parts, 413, 'too_many_parts');
    const files = await post(form(field('purpose', 'batch'), filePart(jsonl(2)), filePart(jsonl(3)), filePart(jsonl(4)), CLOSING));
    expectError(files, 400, 'too_many_files');
    const proto = await post(form(field('__proto__', 'x'), field('purpose', 'batch'), filePart(jsonl(2)), CLOSING));
    expectError(proto, 400, 'invalid_field_name');
    expect(await fileKeys()).toEqual(before);
    expect(await used('alice')).toBe(0);
    await alive();
  });

  it('refuses a file over files.max_file_bytes 413 and keeps none of it', async () => {
    const before = await fileKeys();
    const res = await upload(jsonl(MAX_FILE / 1000 + 1, 1000));
    expect(MAX_FILE).toBeLessThan(QUOTA);
    expectError(res, 413, 'file_too_large');
    expect(res.body.error.message).toContain(String(MAX_FILE));
    expect(await fileKeys()).toEqual(before);
    expect(await used('alice')).toBe(0);
    await alive();
  });

  it('refuses a line over the cap 413 naming it, keeps nothing, and does not buffer the line', async () => {
    const before = await fileKeys();
    const lineBytes = 64 * MAX_LINE; // 16 MiB
    const head = Buffer.from(`${field('purpose', 'batch')}${fileHead()}{"a":1}\n\n`);
    const tail = Buffer.from(`\n${CLOSING}`);
    const piece = Buffer.alloc(64 * 1024, 'x');
    const client = new RawClient(broker.url);
    await client.write(headFor(broker.url, KEYS.alice, head.length + lineBytes + tail.length));
    await client.write(head);

    const baseline = await live();
    // Three quarters of the line, then a look at what the process holds: reading it whole would hold 12 MiB.
    let sent = 0;
    for (; sent < (lineBytes * 3) / 4; sent += piece.length) await client.write(piece);
    await new Promise((r) => setTimeout(r, 300));
    const grown = (await live()) - baseline;
    for (; sent < lineBytes; sent += piece.length) await client.write(piece);
    await client.write(tail);
    const res = await client.response();
    client.destroy();

    expectError(res, 413, 'line_too_long');
    expect(res.body.error.message).toContain('line 3 ');
    expect(res.body.error.message).toContain(String(MAX_LINE));
    expect(grown, `the process grew by ${grown} bytes while a ${lineBytes}-byte line arrived`).toBeLessThan(lineBytes / 4);
    expect(await fileKeys()).toEqual(before);
    expect(await used('alice')).toBe(0);
    await alive();
  });

  it('keeps nothing of an upload whose client disconnects mid-body, and its lines had an expiry from the first write', async () => {
    const before = await fileKeys();
    const lines = jsonl(3000, 100);
    const body = form(field('purpose', 'batch'), fileHead(), lines);
    const client = new RawClient(broker.url);
    await client.write(headFor(broker.url, KEYS.alice, body.length + 10_000));
    await client.write(body);
    // Some lines are in Redis (and held in the quota) before the client goes.
    const linesKey = await waitFor(async () => (await fileKeys()).find((k) => k.endsWith(':lines')));
    const ttl = await redis.pttl(linesKey);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL_S * 1000);
    expect(await used('alice')).toBeGreaterThan(0);
    client.destroy();
    await waitFor(async () => JSON.stringify(await fileKeys()) === JSON.stringify(before));
    expect(await used('alice')).toBe(0);
    await alive();
  });

  it('refuses a purpose other than batch 400 and keeps nothing, whichever part comes first', async () => {
    const before = await fileKeys();
    const content = jsonl(1500, 60);
    const purposeFirst = await post(form(field('purpose', 'fine-tune'), filePart(content), CLOSING));
    expectError(purposeFirst, 400, 'invalid_purpose');
    expect(purposeFirst.body.error.param).toBe('purpose');
    const fileFirst = await post(form(filePart(content), field('purpose', 'fine-tune'), CLOSING));
    expectError(fileFirst, 400, 'invalid_purpose');
    const noPurpose = await post(form(filePart(content), CLOSING));
    expectError(noPurpose, 400, 'invalid_purpose');
    const noFile = await post(form(field('purpose', 'batch'), CLOSING));
    expectError(noFile, 400, 'missing_file');
    expect(await fileKeys()).toEqual(before);
    expect(await used('alice')).toBe(0);
    // The file first and a right purpose after it is fine (the openai SDK's order).
    const ok = await post(form(filePart(content), field('purpose', 'batch'), CLOSING));
    expect(ok.status).toBe(200);
    expect(ok.body.bytes).toBe(Buffer.byteLength(content));
    expect((await del(ok.body.id)).status).toBe(200);
  });

  it('holds a tenant to its quota: two files fit, a third is refused with nothing kept, a deletion makes room', async () => {
    const content = jsonl(4000, 100); // 400,000 bytes
    const first = await upload(content, KEYS.quota);
    const second = await upload(content, KEYS.quota);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(await used('quota')).toBe(800_000);
    const before = await fileKeys();
    const third = await upload(content, KEYS.quota);
    expectError(third, 413, 'file_quota_exceeded');
    expect(third.body.error.message).toContain(`quota of ${QUOTA} bytes`);
    expect(third.body.error.message).toMatch(/\d+ bytes are held now/);
    expect(await fileKeys()).toEqual(before);
    expect(await used('quota')).toBe(800_000);
    // Another tenant's quota is its own.
    const other = await upload(content, KEYS.bob);
    expect(other.status).toBe(200);
    expect((await del(other.body.id, KEYS.bob)).status).toBe(200);

    expect((await del(first.body.id, KEYS.quota)).status).toBe(200);
    expect(await used('quota')).toBe(400_000);
    const again = await upload(content, KEYS.quota);
    expect(again.status).toBe(200);
    for (const f of [second, again]) expect((await del(f.body.id, KEYS.quota)).status).toBe(200);
    expect(await used('quota')).toBe(0);
    expect((await fileKeys()).filter((k) => k.includes(':quota'))).toEqual([]);
  });

  it('lets concurrent uploads of one tenant together hold no more than its quota', async () => {
    const content = jsonl(3000, 100); // 300,000 bytes: at most three of eight fit in 1,000,000
    const results = await Promise.all(Array.from({ length: 8 }, () => upload(content, KEYS.racer)));
    const accepted = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    for (const r of refused) expectError(r, 413, 'file_quota_exceeded');
    expect(accepted.length).toBeLessThanOrEqual(3);
    expect(refused.length).toBeGreaterThanOrEqual(5);
    expect(await used('racer')).toBe(accepted.length * 300_000);
    // Only the accepted files' keys remain: each a hash and its lines.
    const racerFiles = accepted.map((r) => r.body.id as string);
    const lineKeys = (await fileKeys()).filter((k) => k.endsWith(':lines'));
    for (const id of racerFiles) expect(lineKeys).toContain(`${broker.prefix}:file:${id}:lines`);
    expect(await redis.zcard(`${broker.prefix}:file-expiry:racer`)).toBe(accepted.length);
    for (const id of racerFiles) expect((await del(id, KEYS.racer)).status).toBe(200);
    expect(await used('racer')).toBe(0);
    // With the room back, one fits again.
    const after = await upload(content, KEYS.racer);
    expect(after.status).toBe(200);
    expect((await del(after.body.id, KEYS.racer)).status).toBe(200);
  });

  it("uses an API key's limits.file_quota_bytes over files.tenant_quota_bytes", async () => {
    const tooBig = await upload(jsonl(2000, 100), KEYS.small);
    expectError(tooBig, 413, 'file_quota_exceeded');
    expect(tooBig.body.error.message).toContain(`quota of ${SMALL_QUOTA} bytes`);
    const fits = await upload(jsonl(1000, 100), KEYS.small);
    expect(fits.status).toBe(200);
    expect(await used('small')).toBe(100_000);
    // The same 200,000 bytes fit the default quota.
    const elsewhere = await upload(jsonl(2000, 100), KEYS.alice);
    expect(elsewhere.status).toBe(200);
    for (const [id, key] of [[fits.body.id, KEYS.small], [elsewhere.body.id, KEYS.alice]]) expect((await del(id, key)).status).toBe(200);
  });

  it('reports the real expires_at, which is when its keys expire', async () => {
    const res = await upload(jsonl(1500, 100));
    expect(res.status).toBe(200);
    const file = res.body;
    expect(file.expires_at).toBeTypeOf('number');
    expect(file.expires_at - file.created_at).toBeGreaterThanOrEqual(TTL_S);
    expect(file.expires_at - file.created_at).toBeLessThanOrEqual(TTL_S + 1);
    for (const key of [`${broker.prefix}:file:${file.id}`, `${broker.prefix}:file:${file.id}:lines`]) {
      const at = Date.now() + (await redis.pttl(key));
      expect(Math.abs(at - file.expires_at * 1000), key).toBeLessThan(1000);
    }
    const got = await fetch(`${broker.url}/v1/files/${file.id}`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
    expect(((await got.json()) as any).expires_at).toBe(file.expires_at);
    expect((await del(file.id)).status).toBe(200);
  });

  it("deletes a file in OpenAI's shape, frees its quota, and never another tenant's", async () => {
    const before = await fileKeys();
    const res = await upload(jsonl(10));
    expect(await used('alice')).toBe(1000);
    const id = res.body.id as string;
    const auth = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

    expectError(await del(id, KEYS.bob), 404, 'file_not_found');
    expect((await fetch(`${broker.url}/v1/files/${id}`, auth(KEYS.alice))).status).toBe(200);
    expect(await used('alice')).toBe(1000);

    expect(await del(id)).toEqual({ status: 200, body: { id, object: 'file', deleted: true } });
    expect((await fetch(`${broker.url}/v1/files/${id}`, auth(KEYS.alice))).status).toBe(404);
    expect((await fetch(`${broker.url}/v1/files/${id}/content`, auth(KEYS.alice))).status).toBe(404);
    const list = (await (await fetch(`${broker.url}/v1/files`, auth(KEYS.alice))).json()) as any;
    expect(list.data.map((f: { id: string }) => f.id)).not.toContain(id);
    expect(await used('alice')).toBe(0);
    expect(await fileKeys()).toEqual(before);
    expectError(await del(id), 404, 'file_not_found');
    expectError(await del('file-nope'), 404, 'file_not_found');
  });

  it('keeps the original line numbering: blank lines kept, CRLF and a BOM dropped, non-blank lines counted', async () => {
    const res = await upload(Buffer.from('\ufeff{"a":1}\r\n\r\n{"b":2}\n   \n{"c":3}', 'utf8'));
    expect(res.status).toBe(200);
    const id = res.body.id as string;
    const chunks = [];
    for await (const c of store.chunks(id)) chunks.push(c);
    expect(chunks).toEqual([{ first: 1, lines: ['{"a":1}', '', '{"b":2}', '', '{"c":3}'] }]);
    const small = [];
    for await (const c of store.chunks(id, 2)) small.push(c.first);
    expect(small).toEqual([1, 3, 5]);
    expect(await store.lineCount(id)).toBe(3);
    const content = await fetch(`${broker.url}/v1/files/${id}/content`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
    expect(await content.text()).toBe('{"a":1}\n\n{"b":2}\n\n{"c":3}\n');

    // A final newline ends the last line; it does not start an empty one.
    const ended = await upload('{"a":1}\n\n');
    const lines = [];
    for await (const c of store.chunks(ended.body.id)) lines.push(...c.lines);
    expect(lines).toEqual(['{"a":1}', '']);
    expect(await store.lineCount(ended.body.id)).toBe(1);
    for (const f of [id, ended.body.id]) expect((await del(f)).status).toBe(200);
  });

  it('streams a large file back in its lines, whatever their lengths', async () => {
    const long = `{"pad":"${'y'.repeat(MAX_LINE - 10)}"}`;
    const content = `${jsonl(2500, 50)}${long}\n${jsonl(10, 50)}`;
    const res = await upload(content);
    expect(res.status).toBe(200);
    const got = await fetch(`${broker.url}/v1/files/${res.body.id}/content`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
    expect(await got.text()).toBe(content);
    expect(await store.lineCount(res.body.id)).toBe(2511);
    expect((await del(res.body.id)).status).toBe(200);
  });

  it('works with the openai SDK: files.create, retrieve, content, delete', async () => {
    const client = new OpenAI({ apiKey: KEYS.sdk, baseURL: `${broker.url}/v1`, maxRetries: 0 });
    const content = jsonl(3);
    const file = await client.files.create({ file: await toFile(Buffer.from(content), 'sdk.jsonl'), purpose: 'batch' });
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'sdk.jsonl', bytes: content.length });
    expect(file.expires_at).toBeGreaterThan(file.created_at);
    expect((await client.files.retrieve(file.id)).id).toBe(file.id);
    expect(await (await client.files.content(file.id)).text()).toBe(content);
    expect(await client.files.delete(file.id)).toEqual({ id: file.id, object: 'file', deleted: true });
    await expect(client.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    expect(await used('sdk')).toBe(0);
  });

  it('does not count batch output files against the upload quota, and gives them the file TTL', async () => {
    const lines = async function* () {
      yield Array.from({ length: 2000 }, (_, i) => JSON.stringify({ id: i, pad: 'z'.repeat(100) }));
    };
    const out = await store.write('small', 'batch_x_output.jsonl', 'batch_output', lines());
    expect(out).not.toBeNull();
    expect(out!.bytes).toBeGreaterThan(SMALL_QUOTA);
    expect(await used('small')).toBe(0);
    expect(await store.lineCount(out!.id)).toBe(2000);
    const ttl = await redis.pttl(`${broker.prefix}:file:${out!.id}:lines`);
    expect(ttl).toBeGreaterThan((TTL_S - 5) * 1000);
    expect(ttl).toBeLessThanOrEqual(TTL_S * 1000);
    expect(out!.expires_at).toBe(out!.created_at + TTL_S);
    // Nothing written, no file.
    expect(await store.write('small', 'empty.jsonl', 'batch_output', (async function* () { yield []; })())).toBeNull();
    expect(await store.delete(out!.id, 'small')).toBe(true);
  });

  it('forgets an expired file in the quota without any delete (a crashed upload frees its bytes)', async () => {
    // A store whose files live two seconds at most, over the same keys, standing in for an upload whose process died.
    const shortLived = new FileStore(redis, new Keys(broker.prefix), { ...broker.config, files: { ...broker.config.files, ttl_s: 2 } });
    async function* source() {
      yield Buffer.from(jsonl(1200, 100));
    }
    const staged = await shortLived.upload('quota', 'crashed.jsonl', source());
    expect(await used('quota')).toBe(120_000);
    // Never published nor discarded. Once its time is past, the next reservation prunes it.
    await new Promise((r) => setTimeout(r, 2100));
    expect(await redis.exists(`${broker.prefix}:file:${staged.id}:lines`)).toBe(0);
    const next = await upload(jsonl(10), KEYS.quota);
    expect(next.status).toBe(200);
    expect(await used('quota')).toBe(1000);
    expect((await del(next.body.id, KEYS.quota)).status).toBe(200);
  });

  it('logged no error or warning for any of the above: every refusal was a handled 4xx', () => {
    const loud = broker.logs.lines.filter((l) => (l.level as number) >= 40).map((l) => `${l.msg}: ${(l.err as { message?: string } | undefined)?.message ?? ''}`);
    expect(loud).toEqual([]);
  });
});
