import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, testRedis, waitFor } from './support/broker.js';
import { Receiver } from './support/receiver.js';

/*
 * Every secret is random per run, so a hit anywhere can only come from this broker, and each is
 * long and distinctive enough that it cannot turn up by chance.
 */
const hex = (n: number) => randomBytes(n).toString('hex');
const PROVIDER_KEY = `sk-proj-CANARY-provider-${hex(20)}`;
const KEY_A = `sy-tenant-a-${hex(16)}`;
const KEY_B = `sy-tenant-b-${hex(16)}`;
const WEBHOOK_KEY = randomBytes(32).toString('base64');
const WEBHOOK_SECRET = `whsec_${WEBHOOK_KEY}`;
const ADMIN = { user: 'ops', password: `admin-pw-${hex(16)}` };
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ADMIN_BASIC = basic(ADMIN.user, ADMIN.password);
const BODY_LIMIT = 64 * 1024;

const A = { authorization: `Bearer ${KEY_A}` };
const B = { authorization: `Bearer ${KEY_B}` };
const OPS = { authorization: ADMIN_BASIC };

/** Routes that are public on purpose: load balancers call them without credentials. */
const PUBLIC = new Set(['GET /healthz', 'HEAD /healthz', 'GET /readyz', 'HEAD /readyz']);

/** The tenant API as documented; each must exist in the running app (so the route parser is not vacuous). */
const TENANT_ROUTES = [
  'POST /v1/jobs',
  'POST /v1/jobs/bulk',
  'GET /v1/jobs',
  'GET /v1/jobs/:id',
  'POST /v1/jobs/:id/cancel',
  'POST /v1/jobs/:id/webhook/redeliver',
  'GET /v1/providers',
  'POST /v1/files',
  'GET /v1/files',
  'GET /v1/files/:id',
  'GET /v1/files/:id/content',
  'DELETE /v1/files/:id',
  'POST /v1/batches',
  'GET /v1/batches',
  'GET /v1/batches/:id',
  'POST /v1/batches/:id/cancel',
];
/**
 * Who a route is for, which decides the credentials it must take: operator routes (/metrics, /admin)
 * take the admin's HTTP Basic credentials and never a tenant key; tenant routes take a tenant's
 * Bearer key and never the operator credentials; API docs, if they are added, may use either scheme.
 */
const audience = (path: string): 'operator' | 'docs' | 'tenant' =>
  path === '/metrics' || path.startsWith('/admin') ? 'operator' : path.startsWith('/docs') ? 'docs' : 'tenant';
const CHALLENGE = { operator: /^Basic /, docs: /^(Basic|Bearer)\b/, tenant: /^Bearer\b/ };

/**
 * Every route and method of the running app, from Fastify's own route tree, so a route added later
 * is probed without anyone remembering to list it. The tree is read with `commonPrefix: true`: it
 * prints every radix node, so a path is exactly the concatenation of its ancestors (without it, a
 * wildcard under a node that has no handler, such as `static/*`, loses its parent's segment). A line
 * the parser does not understand fails loudly rather than silently dropping a route.
 */
function routesOf(tree: string): { method: string; path: string }[] {
  const routes: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+?)(?: \(([A-Z]+(?:, [A-Z]+)*)\))?$/.exec(line);
    if (!m) throw new Error(`unparsed printRoutes line: ${JSON.stringify(line)}`);
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const path = (stack[depth - 1] ?? '') + m[2]!;
    stack[depth] = path;
    for (const method of m[3]?.split(', ') ?? []) routes.push({ method, path });
  }
  return routes;
}

/** A concrete URL for a route pattern: params and wildcards filled with harmless values. */
const concrete = (path: string) => path.replace(/:[A-Za-z_]+/g, 'probe_x').replace(/\*/g, 'probe');

describe('security: auth on every route, tenant isolation, secrets, body limit', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let receiver: Receiver;
  /** Every response this test received, status line, headers and body, for the secrets scan. */
  const seen: string[] = [];

  beforeAll(async () => {
    mock = await startMock({ apiKey: PROVIDER_KEY });
    receiver = await new Receiver().start();
    const config = configFor(
      { p: mock },
      {
        auth: { api_keys: [{ name: 'tenant-a', key: KEY_A }, { name: 'tenant-b', key: KEY_B }], admin: ADMIN },
        webhooks: { secret: WEBHOOK_SECRET, allow_private_targets: true, timeout_ms: 2000, retry_schedule_s: [0, 1, 1] },
        server: { body_limit_bytes: BODY_LIMIT },
        // The failures below are deliberate; they must not open the breaker and skip later calls.
        breaker: { failure_threshold: 50 },
      },
    );
    // The provider key the broker must send, and must keep to itself (the mock refuses any other).
    config.providers.p!.api_key = PROVIDER_KEY;
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker?.close();
    await receiver?.stop();
    await mock?.app.close();
    if (broker) await dropPrefix(broker.prefix);
  });

  interface Res {
    status: number;
    text: string;
    json: any;
    headers: Headers;
  }
  async function http(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string>; form?: FormData } = {}): Promise<Res> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | FormData | undefined;
    if (opts.form) body = opts.form;
    else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    }
    const res = await fetch(`${broker.url}${path}`, { method, headers, ...(body !== undefined && { body }) });
    const text = await res.text();
    seen.push(`${method} ${path} → ${res.status}\n${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${text}`);
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (file content, metrics, HTML): callers that need JSON assert on it.
    }
    return { status: res.status, text, json, headers: res.headers };
  }

  const chatBody = (content: string) => ({ messages: [{ role: 'user', content }] });
  const submit = async (auth: Record<string, string>, extra: Record<string, unknown> = {}, content = 'hello') => {
    const res = await http('POST', '/v1/jobs', { body: { request: chatBody(content), ...extra }, headers: auth });
    expect(res.status, res.text).toBe(202);
    return res.json.id as string;
  };
  const settle = async (id: string, auth = A) => {
    const res = await http('GET', `/v1/jobs/${id}?wait=20`, { headers: auth });
    expect(res.status).toBe(200);
    return res.json;
  };
  const batchLine = (i: number) => JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', ...chatBody(`line ${i}`), max_tokens: 20 } });
  const upload = async (auth: Record<string, string>, lines: string[]) => {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${lines.join('\n')}\n`], { type: 'application/jsonl' }), 'input.jsonl');
    const res = await http('POST', '/v1/files', { form, headers: auth });
    expect(res.status, res.text).toBe(200);
    return res.json.id as string;
  };
  const createBatch = async (auth: Record<string, string>, fileId: string) => {
    const res = await http('POST', '/v1/batches', { body: { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }, headers: auth });
    expect(res.status, res.text).toBe(200);
    return res.json.id as string;
  };
  const batchStatus = async (id: string, auth = A) => (await http('GET', `/v1/batches/${id}`, { headers: auth })).json.status as string;
  
  it('refuses a missing or wrong credential with 401 on every route but /healthz, /readyz and the /docs', async () => {
    const routes = routesOf(broker.runtime.api!.printRoutes({ commonPrefix: true }));
    const found = new Set(routes.map((r) => `${r.method} ${r.path}`));
    // The documented API is really there, so the probe below covers it (and the parser works).
    for (const route of TENANT_ROUTES) expect(found, `route ${route} not found in printRoutes`).toContain(route);
    expect(found).toContain('GET /metrics');
    for (const route of PUBLIC) expect(found).toContain(route);

    const wrong: [string, Record<string, string>][] = [
      ['no credentials', {}],
      ['a wrong bearer key', { authorization: `Bearer sy-tenant-x-${hex(16)}` }],
      ['a valid key with a suffix', { authorization: `Bearer ${KEY_A}x` }],
      ['an empty bearer', { authorization: 'Bearer ' }],
      ['the key without a scheme', { authorization: KEY_A }],
      ['wrong operator credentials', { authorization: basic(ADMIN.user, 'not-the-password') }],
      ['a malformed basic header', { authorization: 'Basic !!!not-base64' }],
    ];
    // Every refusal that is missing is collected, so one run names all the open doors at once.
    const problems: string[] = [];
    let probed = 0;
    for (const { method, path } of routes) {
      const url = concrete(path);
      if (PUBLIC.has(`${method} ${path}`)) {
        const res = await http(method, url);
        if (res.status !== 200) problems.push(`${method} ${path} is public but answered ${res.status}`);
        continue;
      }
      // The API documentation is public on purpose (it describes the API, it holds nothing of a
      // tenant's); the secrets scan below covers what it serves.
      if (path === '/docs' || path.startsWith('/docs/')) {
        const res = await http(method, url);
        if (res.status >= 500) problems.push(`${method} ${path} answered ${res.status}`);
        continue;
      }
      const who = audience(path);
      const cases: [string, Record<string, string>][] = who === 'operator' ? [...wrong, ['a tenant key', A]] : who === 'tenant' ? [...wrong, ['the operator credentials', OPS]] : wrong;
      // One line per route and kind of failure, naming the credentials that got through.
      const failures = new Map<string, string[]>();
      const fail = (kind: string, what: string) => failures.set(kind, [...(failures.get(kind) ?? []), what]);
      for (const [what, headers] of cases) {
        const res = await http(method, url, { headers, ...(['POST', 'PUT', 'PATCH'].includes(method) && { body: {} }) });
        probed++;
        if (res.status !== 401) {
          fail(`answered ${res.status} (${res.text.slice(0, 60).replace(/\s+/g, ' ')})`, what);
          continue;
        }
        const error = res.json?.error;
        // Every refusal, Bull Board's routes included, is in the API's error shape.
        if (method !== 'HEAD' && !(error?.type === 'authentication_error' && typeof error.message === 'string' && Object.keys(error).sort().join() === 'code,message,param,type')) {
          fail(`401 without the error shape (${res.text.slice(0, 120)})`, what);
        }
        // RFC 9110: a 401 names the scheme the client should use.
        const challenge = res.headers.get('www-authenticate') ?? '';
        if (!CHALLENGE[who].test(challenge)) fail(`401 with www-authenticate ${JSON.stringify(challenge)}`, what);
      }
      for (const [kind, whats] of failures) problems.push(`${method} ${path} ${kind} with: ${whats.join(', ')}`);
    }
    // Soft, so the checks below (the right credentials do open the door) still run and report.
    expect.soft(problems, 'routes that do not refuse bad credentials properly').toEqual([]);
    // 15 tenant routes and /metrics, each with every bad credential, at the least.
    expect(probed).toBeGreaterThanOrEqual((TENANT_ROUTES.length + 1) * wrong.length);

    // The right credentials do open the door (otherwise a 401 everywhere would pass the above).
    expect((await http('GET', '/v1/jobs', { headers: A })).status).toBe(200);
    expect((await http('GET', '/v1/providers', { headers: B })).status).toBe(200);
    expect((await http('GET', '/metrics', { headers: OPS })).status).toBe(200);
  });

  it('isolates tenants: B gets 404 for A’s job, file and batch on every read and cancel route, and lists none of them', async () => {
    // A slow provider keeps A's job and batch unfinished, so B's cancel attempts would bite if allowed.
    mock.behaviour.latencyMs = 3000;
    try {
      const jobId = await submit(A, { webhook_url: receiver.url }, 'tenant a');
      const fileId = await upload(A, [batchLine(1), batchLine(2)]);
      const batchId = await createBatch(A, fileId);

      const probes: [string, string][] = [
        ['GET', `/v1/jobs/${jobId}`],
        ['GET', `/v1/jobs/${jobId}?wait=1`],
        ['POST', `/v1/jobs/${jobId}/cancel`],
        ['POST', `/v1/jobs/${jobId}/webhook/redeliver`],
        ['GET', `/v1/files/${fileId}`],
        ['GET', `/v1/files/${fileId}/content`],
        ['DELETE', `/v1/files/${fileId}`],
        ['GET', `/v1/batches/${batchId}`],
        ['POST', `/v1/batches/${batchId}/cancel`],
      ];
      for (const [method, path] of probes) {
        const res = await http(method, path, { headers: B });
        expect(res.status, `${method} ${path} as B: ${res.text}`).toBe(404);
        expect(res.json.error.type).toBe('not_found_error');
        // Indistinguishable from an id that never existed: no oracle for guessing other tenants' ids.
        const id = [jobId, fileId, batchId].find((x) => path.includes(x))!;
        const ghost = await http(method, path.replace(id, id.replace(/.{6}$/, 'zzzzzz')), { headers: B });
        expect(ghost.status).toBe(404);
        expect(res.text.replaceAll(id, '<id>')).toBe(ghost.text.replaceAll(id.replace(/.{6}$/, 'zzzzzz'), '<id>'));
      }
      // A's own view is untouched by B's attempts.
      expect((await http('GET', `/v1/jobs/${jobId}`, { headers: A })).json.status).not.toBe('cancelled');
      expect(['validating', 'in_progress']).toContain(await batchStatus(batchId));

      const ids = (res: Res) => (res.json.data as { id: string }[]).map((x) => x.id);
      for (const [path, id] of [['/v1/jobs?limit=100', jobId], ['/v1/files?limit=100', fileId], ['/v1/batches?limit=100', batchId]] as const) {
        const listB = await http('GET', path, { headers: B });
        expect(listB.status).toBe(200);
        expect(ids(listB), `${path} as B`).not.toContain(id);
        // A cursor naming A's item gives B nothing of A's either.
        const after = await http('GET', `${path}&after=${id}`, { headers: B });
        expect(after.status).toBe(200);
        expect(ids(after)).not.toContain(id);
        expect(ids(await http('GET', path, { headers: A }))).toContain(id);
      }
      for (const status of ['queued', 'running', 'succeeded']) expect(ids(await http('GET', `/v1/jobs?status=${status}&limit=100`, { headers: B }))).not.toContain(jobId);

      // B cannot run a batch over A's file.
      const steal = await http('POST', '/v1/batches', { body: { input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' }, headers: B });
      expect(steal.status).toBe(400);
      expect(steal.json.error).toMatchObject({ param: 'input_file_id', code: 'file_not_found' });

      // Both of A's things finish normally: B's cancels did nothing.
      expect((await settle(jobId)).status).toBe('succeeded');
      await waitFor(async () => (await batchStatus(batchId)) === 'completed', 30_000, 100);
      // After the job ended, B's redeliver and cancel are still 404 (not 409, which would confirm the id).
      expect((await http('POST', `/v1/jobs/${jobId}/cancel`, { headers: B })).status).toBe(404);
      expect((await http('POST', `/v1/jobs/${jobId}/webhook/redeliver`, { headers: B })).status).toBe(404);
      expect((await http('POST', `/v1/batches/${batchId}/cancel`, { headers: B })).status).toBe(404);
    } finally {
      mock.behaviour.latencyMs = 0;
    }
  });

  it('answers a body over server.body_limit_bytes with 413 in the error shape, and keeps serving', async () => {
    const over = { request: chatBody('x'.repeat(BODY_LIMIT + 1024)) };
    const res = await http('POST', '/v1/jobs', { body: over, headers: A });
    expect(res.status).toBe(413);
    expect(res.json).toMatchObject({ error: { type: 'request_too_large', message: expect.any(String) } });
    expect(Object.keys(res.json.error).sort()).toEqual(['code', 'message', 'param', 'type']);

    // Streamed without a Content-Length: the limit is enforced on the bytes, not on a header.
    const text = JSON.stringify(over);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        const bytes = new TextEncoder().encode(text);
        for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.subarray(i, i + 8192));
        controller.close();
      },
    });
    const chunked = await fetch(`${broker.url}/v1/jobs`, { method: 'POST', headers: { ...A, 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { type: string } }).error.type).toBe('request_too_large');

    // Just under the limit is accepted, and the server is healthy afterwards.
    const under = await http('POST', '/v1/jobs', { body: { request: chatBody('y'.repeat(BODY_LIMIT - 1024)) }, headers: A });
    expect(under.status).toBe(202);
    expect((await http('GET', '/healthz')).status).toBe(200);
    expect((await settle(under.json.id)).status).toBe('succeeded');
  });

  it('keeps the provider key, the API keys, the admin password and the webhook secret out of logs, Redis and responses', async () => {
    // A success with a webhook (then redelivered), a provider outage and a rejected provider key, each
    // ending a job with a webhook; a file and a batch; and the operator views that show queue data.
    const ok = await submit(A, { webhook_url: receiver.url }, 'secret scan ok');
    expect((await settle(ok)).status).toBe('succeeded');

    mock.behaviour.errorRate = 1;
    mock.behaviour.errorStatus = 503;
    const outage = await submit(A, { webhook_url: receiver.url }, 'secret scan 503');
    const failed = await settle(outage);
    mock.behaviour.errorRate = 0;
    expect(failed.status).toBe('failed');

    // A provider (or a proxy before it) that quotes back the credentials it was sent.
    mock.behaviour.rules = [{ match: 'quote my key back', status: 400, message: 'Invalid request made with ${header:authorization}' }];
    const echoed = await settle(await submit(A, {}, 'quote my key back'));
    mock.behaviour.rules = [];
    expect(echoed.status).toBe('failed');
    expect(echoed.error.message).toContain('[redacted]');

    mock.behaviour.apiKey = `sk-some-other-key-${hex(8)}`;
    const rejected = await submit(B, { webhook_url: receiver.url }, 'secret scan 401');
    const rejectedJob = await settle(rejected, B);
    mock.behaviour.apiKey = PROVIDER_KEY;
    expect(rejectedJob.status).toBe('failed');
    expect(JSON.stringify(rejectedJob.attempts)).toMatch(/401/);
    expect(broker.logs.raw.some((l) => l.includes('rejected our credentials'))).toBe(true);

    await waitFor(async () => (await http('GET', `/v1/jobs/${ok}`, { headers: A })).json.webhook?.status === 'delivered');
    expect((await http('POST', `/v1/jobs/${ok}/webhook/redeliver`, { headers: A })).status).toBe(202);
    const deliveriesOf = (id: string) => receiver.received.filter((r) => r.body.includes(id));
    await waitFor(async () => deliveriesOf(ok).length >= 2 && deliveriesOf(outage).length >= 1 && deliveriesOf(rejected).length >= 1);

    const fileId = await upload(A, [batchLine(1), batchLine(2), batchLine(3)]);
    const batchId = await createBatch(A, fileId);
    await waitFor(async () => (await batchStatus(batchId)) === 'completed', 30_000, 100);
    const batch = (await http('GET', `/v1/batches/${batchId}`, { headers: A })).json;
    expect((await http('GET', `/v1/files/${batch.output_file_id}/content`, { headers: A })).text).toContain('chat.completion');
    await http('GET', `/v1/files/${fileId}/content`, { headers: A });
    await http('GET', '/v1/files', { headers: A });
    await http('GET', '/v1/batches', { headers: A });
    await http('GET', '/v1/jobs?limit=100', { headers: A });
    await http('GET', '/v1/jobs?limit=100', { headers: B });
    await http('GET', `/v1/jobs/${rejected}`, { headers: B });
    // Tenants see each provider's state, not every tenant's use of it; operators see the totals.
    const providers = await http('GET', '/v1/providers', { headers: A });
    expect(providers.status).toBe(200);
    expect(providers.json.data[0]).not.toHaveProperty('totals');
    const operators = await http('GET', '/admin/providers', { headers: OPS });
    expect(operators.json.data[0].totals.attempts).toBeGreaterThan(0);
    expect((await http('GET', '/admin/providers', { headers: A })).status).toBe(401);
    expect((await http('GET', '/metrics', { headers: OPS })).status).toBe(200);
    const boards = await http('GET', '/admin/queues/api/queues', { headers: OPS });
    expect(boards.status).toBe(200);
    expect(boards.text).toContain('sy-webhooks');
    await http('GET', '/admin/queues/api/redis/stats', { headers: OPS });
    await http('GET', '/healthz');
    await http('GET', '/readyz');

    const needles: [string, string][] = [
      ['provider api_key', PROVIDER_KEY],
      ['tenant-a API key', KEY_A],
      ['tenant-b API key', KEY_B],
      ['webhook secret', WEBHOOK_SECRET],
      ['webhook secret key bytes (base64)', WEBHOOK_KEY],
      ['admin password', ADMIN.password],
      ['admin Basic credentials', ADMIN_BASIC.slice('Basic '.length)],
    ];
    const leaks = (text: string) => needles.filter(([, secret]) => text.includes(secret)).map(([name]) => name);

    // (a) Logs: every line the broker wrote, at debug level.
    expect(broker.logs.raw.length).toBeGreaterThan(10);
    const logLeaks = broker.logs.raw.map((line) => [leaks(line), line] as const).filter(([found]) => found.length > 0);
    expect(logLeaks, 'log lines holding a secret').toEqual([]);

    // (b) Redis: every key under the prefix, each read according to its type. Two planted canaries
    // prove the scan reads hashes and streams (BullMQ keeps job data and events there).
    const redis = testRedis();
    try {
      await redis.hset(`${broker.prefix}:zz-canary-hash`, 'f', `x${PROVIDER_KEY}x`);
      await redis.xadd(`${broker.prefix}:zz-canary-stream`, '*', 'f', KEY_B);
      const dump = await dumpPrefix(redis, broker.prefix);
      await redis.del(`${broker.prefix}:zz-canary-hash`, `${broker.prefix}:zz-canary-stream`);
      const types = new Set(dump.map((d) => d.type));
      for (const t of ['hash', 'stream', 'zset', 'list', 'string']) expect(types, `no ${t} key under the prefix: the scan would be vacuous`).toContain(t);
      expect(dump.some((d) => d.key.includes(':sy-webhooks:'))).toBe(true);
      expect(dump.some((d) => d.key.includes(':llm-p:'))).toBe(true);
      const redisLeaks = dump.map((d) => ({ key: d.key, found: leaks(`${d.key}\n${d.text}`) })).filter((d) => d.found.length > 0).sort((x, y) => x.key.localeCompare(y.key));
      expect(redisLeaks).toEqual([
        { key: `${broker.prefix}:zz-canary-hash`, found: ['provider api_key'] },
        { key: `${broker.prefix}:zz-canary-stream`, found: ['tenant-b API key'] },
      ]);
    } finally {
      redis.disconnect();
    }

    // (c) Every HTTP response this file received (status, headers, body), and every webhook delivery.
    expect(seen.length).toBeGreaterThan(20);
    const responseLeaks = seen.filter((r) => leaks(r).length > 0).map((r) => `${leaks(r).join(', ')} in ${r.slice(0, 300)}`);
    expect(responseLeaks, 'responses holding a secret').toEqual([]);
    expect(receiver.received.length).toBeGreaterThanOrEqual(4);
    const hookLeaks = receiver.received.filter((r) => leaks(`${JSON.stringify(r.headers)}\n${r.body}`).length > 0);
    expect(hookLeaks, 'webhook deliveries holding a secret').toEqual([]);
  });
});

/*
 * What a review of the running broker found on 2026-12-01, each kept fixed here; the dedicated
 * files (files, admission, webhook-fairness, webhook-netns, breaker-tenants, dev-mode, redaction,
 * request-limits, deployment-files) hold the full tests.
 */
describe('security: the field review', () => {
  let mock: MockServer;
  let broker: TestBroker;
  beforeAll(async () => {
    mock = await startMock();
    // The default policy: private targets refused, no allowlist.
    broker = await startBroker(configFor({ p: mock }, { auth: { api_keys: [{ name: 'tenant-a', key: KEY_A }] }, webhooks: { secret: WEBHOOK_SECRET } }), { workers: undefined });
  });
  afterAll(async () => {
    await broker?.close();
    await mock?.app.close();
    if (broker) await dropPrefix(broker.prefix);
  });
  const submitWith = (webhook_url: string) => broker.call('POST', '/v1/jobs', { request: { messages: [{ role: 'user', content: 'x' }] }, webhook_url }, A);

  it('accepts webhooks to public IPv4 and IPv6 addresses, and refuses IPv6 forms that embed IPv4', async () => {
    for (const url of ['http://93.184.216.34/hook', 'https://8.8.8.8/hook', 'http://[2606:4700:4700::1111]/hook']) expect((await submitWith(url)).status, url).toBe(202);
    for (const url of ['http://[::ffff:5db8:d822]/hook', 'http://[::ffff:127.0.0.1]/hook', 'http://[64:ff9b::808:808]/hook', 'http://[64:ff9b:1::1]/hook', 'http://[fec0::1]/hook', 'http://169.254.169.254/latest']) {
      const res = await submitWith(url);
      expect(res.status, url).toBe(400);
      expect(res.body.error.code).toBe('webhook_target_refused');
    }
  });

  it('answers a multipart upload cut off before its closing boundary with 400, and keeps serving', async () => {
    const boundary = 'sy-boundary-0123';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n{"custom_id":"a"}\n`;
    const res = await fetch(`${broker.url}/v1/files`, { method: 'POST', headers: { ...A, 'content-type': `multipart/form-data; boundary=${boundary}` }, body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    const unbounded = await fetch(`${broker.url}/v1/files`, { method: 'POST', headers: { ...A, 'content-type': 'multipart/form-data' }, body: 'x' });
    expect(unbounded.status).toBe(400);
    expect((await fetch(`${broker.url}/healthz`)).status).toBe(200);
  });
});

/** Every key under a prefix with its whole content as text, whatever its Redis type. */
async function dumpPrefix(redis: Redis, prefix: string): Promise<{ key: string; type: string; text: string }[]> {
  const out: { key: string; type: string; text: string }[] = [];
  // The prefix's own slot, and a sharded layout's tags (`{sy-test-…:3}`, `{sy-test-…:q:p}`).
  const scans = [redis.scanStream({ match: `${prefix}*`, count: 1000 }), redis.scanStream({ match: `${prefix.slice(0, -1)}:*`, count: 1000 })];
  for await (const keys of (async function* () {
    for (const s of scans) yield* s;
  })()) {
    for (const key of keys as string[]) {
      const type = await redis.type(key);
      let content: unknown;
      switch (type) {
        case 'none':
          continue; // expired between SCAN and TYPE
        case 'string':
          content = await redis.get(key);
          break;
        case 'hash':
          content = await redis.hgetall(key);
          break;
        case 'list':
          content = await redis.lrange(key, 0, -1);
          break;
        case 'set':
          content = await redis.smembers(key);
          break;
        case 'zset':
          content = await redis.zrange(key, '0', '-1', 'WITHSCORES');
          break;
        case 'stream':
          content = await redis.xrange(key, '-', '+');
          break;
        default:
          // A type this scan cannot read would hide whatever it holds.
          throw new Error(`key ${key} has type ${type}, which the secrets scan does not read`);
      }
      out.push({ key, type, text: typeof content === 'string' ? content : JSON.stringify(content) });
    }
  }
  return out;
}
