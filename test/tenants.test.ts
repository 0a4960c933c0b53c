import { afterEach, describe, expect, it } from 'vitest';
import { monthOf } from '../src/store/job-store.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

const A = 'sy-tenant-a-key-0123456789';
const B = 'sy-tenant-b-key-0123456789';
const as = (key: string) => ({ authorization: `Bearer ${key}` });

describe('the month a spend counts against', () => {
  it('follows the UTC calendar across month and year ends, in any order', () => {
    expect(monthOf(Date.UTC(2026, 10, 30, 23, 59, 59))).toBe('2026-11');
    expect(monthOf(Date.UTC(2026, 11, 1, 0, 0, 0))).toBe('2026-12');
    expect(monthOf(Date.UTC(2027, 0, 1))).toBe('2027-01');
    expect(monthOf(Date.UTC(2026, 10, 15))).toBe('2026-11');
  });
});

describe('tenant limits', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function broker(limits: Record<string, unknown>, opts: { workers?: boolean; extra?: Record<string, unknown> } = {}): Promise<{ b: TestBroker; mock: MockServer }> {
    const mock = await startMock();
    const config = configFor({ p: mock }, { auth: { api_keys: [{ name: 'a', key: A, limits }, { name: 'b', key: B }] }, ...opts.extra });
    const b = await startBroker(config, opts.workers ? {} : { workers: undefined });
    cleanup.push(() => mock.app.close(), () => b.close(), () => dropPrefix(b.prefix));
    return { b, mock };
  }

  it('limits intake requests per minute, with Retry-After, and only for that tenant', async () => {
    const { b } = await broker({ rpm: 3 });
    for (let i = 0; i < 3; i++) expect((await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).status).toBe(202);
    const refused = await b.call('POST', '/v1/jobs', { request: chat() }, as(A));
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: 'rate_limit_error', code: 'tenant_rate_limited' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await b.call('POST', '/v1/jobs', { request: chat() }, as(B))).status).toBe(202);
  });

  it('caps unfinished jobs, counting a bulk request whole, and frees room as jobs end', async () => {
    const { b } = await broker({ max_queued: 5 });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).body.id);
    const bulk = await b.call('POST', '/v1/jobs/bulk', { jobs: [{ request: chat() }, { request: chat() }] }, as(A));
    expect(bulk.status).toBe(429);
    expect(bulk.body.error.code).toBe('too_many_queued_jobs');
    expect((await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).status).toBe(202);
    expect((await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).status).toBe(429);
    await b.call('POST', `/v1/jobs/${ids[0]}/cancel`, undefined, as(A));
    expect((await b.call('POST', '/v1/jobs', { request: chat() }, as(A))).status).toBe(202);
  });
});
