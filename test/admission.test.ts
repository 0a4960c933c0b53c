import { afterEach, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor, withRedis } from './support/broker.js';

const A = 'sy-admission-a-key-0123456789';
const B = 'sy-admission-b-key-0123456789';
const as = (key: string) => ({ authorization: `Bearer ${key}` });

/** $1 a token either way: a job's estimated spend is its token estimate in dollars. */
const DOLLAR_A_TOKEN = { 'p/model-a': { input: 1_000_000, output: 1_000_000 } };
/** chat('hello') with max_tokens 5: 9 prompt tokens (35 characters / 4) and 5 completion tokens. */
const SMALL = { ...chat('hello'), max_tokens: 5 };
const SMALL_ESTIMATE_USD = 14;

/*
 * Every path that creates work (a job, a bulk request, a batch) is admitted against the tenant's
 * limits, and admitted atomically: concurrent requests cannot together pass a limit.
 */
describe('admission against tenant limits', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function broker(limits: Record<string, unknown>, opts: { workers?: boolean; mock?: Record<string, unknown>; extra?: Record<string, unknown> } = {}): Promise<{ b: TestBroker; mock: MockServer }> {
    const mock = await startMock(opts.mock);
    const config = configFor({ p: mock }, { auth: { api_keys: [{ name: 'a', key: A, limits }, { name: 'b', key: B }] }, ...opts.extra });
    const b = await startBroker(config, opts.workers ? {} : { workers: undefined });
    cleanup.push(() => mock.app.close(), () => b.close(), () => dropPrefix(b.prefix));
    return { b, mock };
  }
  const post = (b: TestBroker, body: unknown, key = A, headers: Record<string, string> = {}) => b.call('POST', '/v1/jobs', body, { ...as(key), ...headers });
  const bulk = (b: TestBroker, jobs: unknown[], key = A, headers: Record<string, string> = {}) => b.call('POST', '/v1/jobs/bulk', { jobs }, { ...as(key), ...headers });
  const line = (i: number, body: Record<string, unknown> = SMALL) => JSON.stringify({ custom_id: `c-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', ...body } });
  async function batch(b: TestBroker, lines: string[], key = A) {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${lines.join('\n')}\n`]), 'input.jsonl');
    const file = await fetch(`${b.url}/v1/files`, { method: 'POST', body: form, headers: as(key) });
    expect(file.status).toBe(200);
    const { id } = (await file.json()) as { id: string };
    return b.call('POST', '/v1/batches', { input_file_id: id, endpoint: '/v1/chat/completions', completion_window: '24h' }, as(key));
  }
  const jobsOf = (b: TestBroker, tenant: string) => withRedis((redis) => redis.zcard(b.runtime.store.keys.jobIndex(tenant)));

  it('admits exactly max_queued of 40 concurrent submits, and of concurrent bulks', async () => {
    const { b } = await broker({ max_queued: 5 });
    const singles = await Promise.all(Array.from({ length: 40 }, () => post(b, { request: chat() })));
    expect(singles.filter((r) => r.status === 202)).toHaveLength(5);
    const refused = singles.filter((r) => r.status !== 202);
    expect(refused.every((r) => r.status === 429 && r.body.error.code === 'too_many_queued_jobs')).toBe(true);
    expect(refused[0]!.headers.get('retry-after')).toBe('1');
    expect((await b.runtime.store.tenantTotals('a')).queued).toBe(5);
    expect(await jobsOf(b, 'a')).toBe(5);
  });

  it('admits concurrent bulk requests whole or not at all, never past max_queued', async () => {
    const { b } = await broker({ max_queued: 15 });
    const answers = await Promise.all(Array.from({ length: 10 }, () => bulk(b, [{ request: chat() }, { request: chat() }, { request: chat() }])));
    expect(answers.filter((r) => r.status === 202)).toHaveLength(5);
    expect((await b.runtime.store.tenantTotals('a')).queued).toBe(15);
    expect(await jobsOf(b, 'a')).toBe(15);
  });

  it('holds a batch to max_queued at its creation: too many lines is a 429, and its lines count against later jobs', async () => {
    const { b } = await broker({ max_queued: 5 }, { workers: true, mock: { latencyMs: 3000 } });
    const big = await batch(b, Array.from({ length: 61 }, (_, i) => line(i)));
    expect(big.status).toBe(429);
    expect(big.body.error).toMatchObject({ type: 'rate_limit_error', code: 'too_many_queued_jobs' });
    expect(big.body.error.message).toContain('61');
    expect((await b.call('GET', '/v1/batches', undefined, as(A))).body.data).toHaveLength(0);

    const small = await batch(b, Array.from({ length: 4 }, (_, i) => line(i)));
    expect(small.status).toBe(200);
    expect((await post(b, { request: chat() })).status).toBe(202);
    // Four lines (being admitted or queued) and one job: the tenant is full.
    expect((await post(b, { request: chat() })).status).toBe(429);
    await waitFor(async () => (await jobsOf(b, 'a')) === 5);
    expect((await b.runtime.store.tenantTotals('a')).queued).toBe(5);
    // Another tenant is not affected.
    expect((await post(b, { request: chat() }, B)).status).toBe(202);
  });

  it('counts a batch as an intake request against the tenant rpm', async () => {
    const { b } = await broker({ rpm: 2 });
    expect((await post(b, { request: chat() })).status).toBe(202);
    expect((await batch(b, [line(1)])).status).toBe(200);
    const third = await batch(b, [line(2)]);
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('tenant_rate_limited');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('reserves each job’s estimated spend, so neither concurrency nor a bulk can overshoot the budget', async () => {
    const { b } = await broker({ monthly_budget_usd: 3 * SMALL_ESTIMATE_USD + 1 }, { extra: { pricing: DOLLAR_A_TOKEN } });
    // Ten jobs' estimates cannot fit in a budget for three: the whole bulk is refused, nothing written.
    const tooMuch = await bulk(b, Array.from({ length: 10 }, () => ({ request: SMALL })));
    expect(tooMuch.status).toBe(402);
    expect(tooMuch.body.error).toMatchObject({ type: 'budget_exceeded_error', code: 'monthly_budget_exceeded' });
    expect(await jobsOf(b, 'a')).toBe(0);
    // Three fit, while none has run yet (no workers here): the fourth is refused on the reservation alone.
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(b, { request: SMALL })));
    expect(answers.filter((r) => r.status === 202)).toHaveLength(3);
    expect(answers.filter((r) => r.status === 402)).toHaveLength(5);
    const totals = await b.runtime.store.tenantTotals('a');
    expect(totals.month_spend_usd).toBe(0);
    expect(totals.month_reserved_usd).toBeCloseTo(3 * SMALL_ESTIMATE_USD, 6);
    // Cancelling a job gives its reservation back.
    await b.call('POST', `/v1/jobs/${answers.find((r) => r.status === 202)!.body.id}/cancel`, undefined, as(A));
    expect((await b.runtime.store.tenantTotals('a')).month_reserved_usd).toBeCloseTo(2 * SMALL_ESTIMATE_USD, 6);
    expect((await post(b, { request: SMALL })).status).toBe(202);
  });

  it('replaces a reservation with the real cost when the job ends, and refuses at 100% of the budget', async () => {
    const { b } = await broker({ monthly_budget_usd: 20 }, { workers: true, extra: { pricing: DOLLAR_A_TOKEN } });
    const first = await post(b, { request: SMALL });
    expect(first.status).toBe(202);
    const done = (await b.call('GET', `/v1/jobs/${first.body.id}?wait=20`, undefined, as(A))).body;
    expect(done.status).toBe('succeeded');
    await waitFor(async () => (await b.runtime.store.tenantTotals('a')).month_reserved_usd === 0);
    const totals = await b.runtime.store.tenantTotals('a');
    expect(totals.month_spend_usd).toBeCloseTo(done.cost_usd, 6);
    expect(totals.prompt_tokens).toBe(done.usage.prompt_tokens);
    expect(done.cost_usd).toBeLessThanOrEqual(SMALL_ESTIMATE_USD);
    // What is left (20 − cost) is less than another job's estimate.
    const refused = await post(b, { request: SMALL });
    expect(refused.status).toBe(402);
    expect(refused.body.error.message).toMatch(/could cost up to \$14/);
  });

  it('refuses a batch at its creation once the budget is spent, and fails one whose estimate does not fit', async () => {
    const { b } = await broker({ monthly_budget_usd: 20 }, { workers: true, extra: { pricing: DOLLAR_A_TOKEN } });
    // Five lines need about $70 of a $20 budget: the batch fails at validation, naming the budget, with no job made.
    const created = await batch(b, Array.from({ length: 5 }, (_, i) => line(i)));
    expect(created.status).toBe(200);
    const failed = await waitFor(async () => {
      const r = (await b.call('GET', `/v1/batches/${created.body.id}`, undefined, as(A))).body;
      return r.status === 'failed' ? r : null;
    });
    expect(failed.errors.data).toEqual([expect.objectContaining({ code: 'monthly_budget_exceeded', line: null })]);
    expect(await jobsOf(b, 'a')).toBe(0);
    expect((await b.runtime.store.tenantTotals('a')).month_reserved_usd).toBe(0);
    // One line fits and runs; once its cost uses the budget up, a new batch is a 402 at once.
    const one = await batch(b, [line(1, { ...chat('hello'), max_tokens: 5 })]);
    expect(one.status).toBe(200);
    await waitFor(async () => (await b.call('GET', `/v1/batches/${one.body.id}`, undefined, as(A))).body.status === 'completed', 20_000);
    // The rest of the month's spend, as jobs before it would have left it.
    await withRedis((redis) => redis.hincrby(b.runtime.store.keys.tenant('a'), `spend_e10:${new Date().toISOString().slice(0, 7)}`, 20 * 1e10));
    const late = await batch(b, [line(2)]);
    expect(late.status).toBe(402);
    expect(late.body.error.code).toBe('monthly_budget_exceeded');
  });

  it('refuses, for a tenant with a budget, a model the price table cannot count', async () => {
    const { b } = await broker({ monthly_budget_usd: 100 });
    // configFor's model "p/model-a" has no price: a budget could not hold it.
    const res = await post(b, { request: chat() });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'unpriced_model', param: 'model' });
    expect(res.body.error.message).toContain('p/model-a');
    // A tenant without a budget is not held to it.
    expect((await post(b, { request: chat() }, B)).status).toBe(202);
  });

  it('writes nothing for a bulk request refused with 422 for a reused Idempotency-Key', async () => {
    const { b } = await broker({ max_queued: 100 });
    const key = { 'idempotency-key': 'bulk-k' };
    const first = await bulk(b, [{ request: chat('one') }, { request: chat('two') }], A, key);
    expect(first.status).toBe(202);
    // Same key: items 0 and 1 are replays, but item 1 now has another body.
    const reuse = await bulk(b, [{ request: chat('one') }, { request: chat('changed') }, { request: chat('three') }, { request: chat('four') }], A, key);
    expect(reuse.status).toBe(422);
    expect(reuse.body.error).toMatchObject({ code: 'idempotency_key_reused' });
    expect(reuse.body.error.message).toContain('jobs[1]');
    expect(await jobsOf(b, 'a')).toBe(2);
    expect((await b.runtime.store.tenantTotals('a')).queued).toBe(2);
  });

  it('keeps a single job keyed K:0 apart from item 0 of a bulk keyed K', async () => {
    const { b } = await broker({});
    const single = await post(b, { request: chat('single') }, A, { 'idempotency-key': 'K:0' });
    const many = await bulk(b, [{ request: chat('bulk item') }], A, { 'idempotency-key': 'K' });
    expect(single.status).toBe(202);
    expect(many.status).toBe(202);
    expect(many.body.data[0].id).not.toBe(single.body.id);
  });
});
