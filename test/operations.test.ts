import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

const KEY = 'sy-ops-tenant-key-0123456789';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('operator endpoints', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let noAdmin: TestBroker;

  beforeAll(async () => {
    mock = await startMock();
    broker = await startBroker(configFor({ p: mock }, { auth: { api_keys: [{ name: 't', key: KEY }], admin: { user: 'ops', password: 'correct horse battery' } } }), { workers: undefined });
    noAdmin = await startBroker(configFor({ p: mock }, { auth: { api_keys: [{ name: 't', key: KEY }] } }), { workers: undefined });
  });
  afterAll(async () => {
    await broker.close();
    await noAdmin.close();
    await mock.app.close();
    await Promise.all([dropPrefix(broker.prefix), dropPrefix(noAdmin.prefix)]);
  });

  const get = (b: TestBroker, path: string, authorization?: string) => fetch(`${b.url}${path}`, { headers: authorization ? { authorization } : {} });

  it('puts Bull Board behind the admin credentials', async () => {
    expect((await get(broker, '/admin/queues')).status).toBe(401);
    expect((await get(broker, '/admin/queues')).headers.get('www-authenticate')).toMatch(/^Basic/);
    const wrong = await get(broker, '/admin/queues', basic('ops', 'wrong password'));
    expect(wrong.status).toBe(401);
    // In the API's error shape, not Bull Board's.
    expect(((await wrong.json()) as { error: unknown }).error).toMatchObject({ type: 'authentication_error', code: 'invalid_operator_credentials' });
    expect((await get(broker, '/admin/queues', `Bearer ${KEY}`)).status).toBe(401);
    const page = await get(broker, '/admin/queues', basic('ops', 'correct horse battery'));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
  });

  it('shows every provider queue and the broker queues, grouped and read-only', async () => {
    const res = await get(broker, '/admin/queues/api/queues', basic('ops', 'correct horse battery'));
    expect(res.status).toBe(200);
    const { queues } = (await res.json()) as { queues: { name: string; readOnlyMode: boolean; delimiter: string }[] };
    expect(queues.map((q) => q.name).sort()).toEqual(['llm-p', 'sy-batches', 'sy-deadlines', 'sy-webhooks']);
    expect(queues.every((q) => q.readOnlyMode && q.delimiter === '-')).toBe(true);
    // Read-only is enforced, not only drawn: an action is refused.
    const retry = await fetch(`${broker.url}/admin/queues/api/queues/llm-p/retry/failed`, { method: 'PUT', headers: { authorization: basic('ops', 'correct horse battery') } });
    expect(retry.status).toBe(405);
  });

  it('shows a provider queue with no rpm as not rate limited once hops have run, and a 429 pause as one', async () => {
    const mockB = await startMock();
    const working = await startBroker(configFor({ p: mockB }, { auth: { api_keys: [{ name: 't', key: KEY }], admin: { user: 'ops', password: 'correct horse battery' } } }));
    try {
      const auth = { authorization: `Bearer ${KEY}` };
      const { body } = await working.call('POST', '/v1/jobs', { request: { messages: [{ role: 'user', content: 'x' }] } }, auth);
      expect((await working.call('GET', `/v1/jobs/${body.id}?wait=10`, undefined, auth)).body.status).toBe('succeeded');
      const board = async () => ((await (await get(working, '/admin/queues/api/queues', basic('ops', 'correct horse battery'))).json()) as { queues: { name: string; activeRateLimitTtl: number }[] }).queues.find((q) => q.name === 'llm-p')!;
      // BullMQ's limiter counted that hop; it is not a pause.
      expect((await board()).activeRateLimitTtl).toBe(0);
      await working.runtime.queues.get('p').rateLimit(5000);
      expect((await board()).activeRateLimitTtl).toBeGreaterThan(3000);
    } finally {
      await working.close();
      await mockB.app.close();
      await dropPrefix(working.prefix);
    }
  });

  it('puts /metrics behind the admin credentials, and shuts operator routes when no admin is configured', async () => {
    expect((await get(broker, '/metrics', `Bearer ${KEY}`)).status).toBe(401);
    const metrics = await get(broker, '/metrics', basic('ops', 'correct horse battery'));
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/switchyard_queue_jobs/);
    expect((await get(noAdmin, '/metrics', `Bearer ${KEY}`)).status).toBe(403);
    expect((await get(noAdmin, '/admin/queues')).status).toBe(403);
  });
});
