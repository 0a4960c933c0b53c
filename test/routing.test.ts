import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { chat, configFor, dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

/*
 * Routing beyond an ordered chain (DESIGN section 8), end to end: real Redis, real mock providers
 * over HTTP, the broker's API and workers in this process. Each config re-reads the shared routing
 * state every 50 ms and never explores, so what a job sees is what the state says.
 */
const ROUTING = { state_refresh_ms: 50, explore: 0 };

type Headers = Record<string, string>;
const submit = (b: TestBroker, body: Record<string, unknown>, headers: Headers = {}) => b.call('POST', '/v1/jobs', { request: chat(), ...body }, headers);
async function run(b: TestBroker, body: Record<string, unknown>, headers: Headers = {}) {
  const posted = await submit(b, body, headers);
  expect(posted.status, JSON.stringify(posted.body)).toBe(202);
  return (await b.call('GET', `/v1/jobs/${posted.body.id}?wait=30`, undefined, headers)).body;
}
/** Posted together, then each waited for: they are routed before any of them finishes. */
async function runAll(b: TestBroker, bodies: Record<string, unknown>[], headers: Headers = {}) {
  const posted = await Promise.all(bodies.map((body) => submit(b, body, headers)));
  for (const p of posted) expect(p.status, JSON.stringify(p.body)).toBe(202);
  return Promise.all(posted.map(async (p) => (await b.call('GET', `/v1/jobs/${p.body.id}?wait=30`, undefined, headers)).body));
}
const behave = (m: MockServer, b: Record<string, unknown>) => fetch(`${m.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
const jobCount = async (b: TestBroker, headers: Headers = {}) => (await b.call('GET', '/v1/jobs?limit=100', undefined, headers)).body.data.length as number;
const closeAll = async (b: TestBroker, mocks: MockServer[]) => {
  await b.close();
  await Promise.all(mocks.map((m) => m.app.close()));
  await dropPrefix(b.prefix);
};

async function metricsOf(b: TestBroker, headers: Headers = {}): Promise<string> {
  const res = await fetch(`${b.url}/metrics`, { headers });
  expect(res.status).toBe(200);
  return res.text();
}
/** One sample of a Prometheus text exposition, matched by name and the labels given (in any order). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('context windows', () => {
  let small: MockServer;
  let big: MockServer;
  let broker: TestBroker;
  // About 108 prompt tokens (chars/4 of the messages' JSON) plus 10 for the answer: more than 100.
  const long = { ...chat('x'.repeat(400)), max_tokens: 10 };

  beforeAll(async () => {
    small = await startMock();
    big = await startMock();
    const config = configFor({ small, big }, { models: { fits: ['small/m', 'big/m'], tiny: ['small/m', 'big/tiny'] }, tasks: { default: 'fits' }, routing: ROUTING });
    config.providers.small = { ...config.providers.small!, models: { m: { context_window: 100 } } };
    config.providers.big = { ...config.providers.big!, models: { tiny: { context_window: 100 } } };
    broker = await startBroker(config);
  });
  afterAll(() => closeAll(broker, [small, big]));

  it('sends a request that fits to the small target, and skips it uncalled for one that does not', async () => {
    const fits = await run(broker, { model: 'fits', request: { ...chat('short'), max_tokens: 10 } });
    expect(fits).toMatchObject({ status: 'succeeded', provider: 'small' });
    const callsBefore = small.stats.calls;

    const job = await run(broker, { model: 'fits', request: long });
    expect(job.status).toBe('succeeded');
    expect(job.provider).toBe('big');
    expect(small.stats.calls).toBe(callsBefore);
    expect(job.attempts).toHaveLength(1);
    expect(job.routing.input_tokens).toBeGreaterThan(100);
    expect(job.routing.candidates).toEqual([
      { target: 'small/m', tier: 1, context_window: 100, skipped: 'context_window' },
      expect.objectContaining({ target: 'big/m', position: 0 }),
    ]);
    expect(job.routing.candidates[1]).not.toHaveProperty('skipped');
  });

  it('refuses POST /v1/jobs with 400 context_length_exceeded when no target fits, creating nothing', async () => {
    const before = await jobCount(broker);
    const calls = small.stats.calls + big.stats.calls;
    const res = await submit(broker, { model: 'tiny', request: long });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'context_length_exceeded', param: 'request' });
    expect(res.body.error.message).toMatch(/small\/m \(100\).*big\/tiny \(100\)/);
    expect(await jobCount(broker)).toBe(before);
    expect(small.stats.calls + big.stats.calls).toBe(calls);
  });

  it('refuses the whole bulk request, naming the item that fits nowhere, and enqueues none', async () => {
    const before = await jobCount(broker);
    const res = await broker.call('POST', '/v1/jobs/bulk', { jobs: [{ model: 'fits', request: chat('fine') }, { model: 'tiny', request: long }] });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_jobs', param: 'jobs' });
    expect(res.body.error.message).toMatch(/jobs\[1\]\.request: .*context window/);
    expect(res.body.error.message).not.toMatch(/jobs\[0\]/);
    expect(await jobCount(broker)).toBe(before);
  });

  it('fails a batch at validation naming the line that fits no window, and makes no job of any line', async () => {
    const client = new OpenAI({ apiKey: 'unused-in-dev-mode', baseURL: `${broker.url}/v1`, maxRetries: 0 });
    const line = (id: string, model: string, body: object) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model, ...body } });
    const before = await jobCount(broker);
    const file = await client.files.create({ file: await toFile(Buffer.from(`${[line('ok', 'fits', chat('fine')), line('huge', 'tiny', long)].join('\n')}\n`), 'in.jsonl'), purpose: 'batch' });
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const batch = await waitFor(async () => {
      const b = await client.batches.retrieve(created.id);
      return b.status === 'failed' ? b : null;
    });
    expect(batch.errors!.data!.map((e) => [e.line, e.code])).toEqual([[2, 'context_length_exceeded']]);
    expect(await jobCount(broker)).toBe(before);
  });

  it('answers the front door with an OpenAI-shaped 400 context_length_exceeded', async () => {
    const before = await jobCount(broker);
    const res = await fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', ...long }) });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-switchyard-job-id')).toBeNull();
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'context_length_exceeded', param: 'request', message: expect.stringContaining('context window') });
    expect(await jobCount(broker)).toBe(before);
  });
});

describe('task rules', () => {
  let mocks: Record<'l' | 's' | 'f', MockServer>;
  let broker: TestBroker;
  const tasks = {
    default: 'fast',
    summarize: [{ when: { input_tokens: { gt: 500 } }, model: 'long' }, { when: { metadata: { tier: 'premium' } }, model: 'smart' }, { model: 'fast' }],
    strict: [{ when: { metadata: { tier: ['premium', 'gold'] } }, model: 'smart' }],
  };
  const models = { long: ['l/m'], smart: ['s/m'], fast: ['f/m'] };

  beforeAll(async () => {
    mocks = { l: await startMock(), s: await startMock(), f: await startMock() };
    broker = await startBroker(configFor(mocks, { models, tasks, routing: ROUTING }));
  });
  afterAll(() => closeAll(broker, Object.values(mocks)));

  it.each([
    ['a long input goes to long, even with premium metadata (first match wins)', { request: chat('y'.repeat(2400)), metadata: { tier: 'premium' } }, 'l', 'long', 0],
    ['premium metadata goes to smart', { metadata: { tier: 'premium' } }, 's', 'smart', 1],
    ['anything else goes to fast', { metadata: { tier: 'basic' } }, 'f', 'fast', 2],
  ])('%s', async (_name, body, provider, alias, rule) => {
    const calls = mocks[provider as 'l'].stats.calls;
    const job = await run(broker, { task: 'summarize', ...body });
    expect(job).toMatchObject({ status: 'succeeded', provider, task: 'summarize' });
    expect(job.routing).toMatchObject({ alias, rule, strategy: 'ordered' });
    expect(mocks[provider as 'l'].stats.calls).toBe(calls + 1);
  });

  it('matches a metadata list by any of its values, and refuses a job no rule matches with 400 no_matching_rule', async () => {
    expect((await run(broker, { task: 'strict', metadata: { tier: 'gold' } })).routing).toMatchObject({ alias: 'smart', rule: 0 });
    const before = await jobCount(broker);
    const res = await submit(broker, { task: 'strict', metadata: { tier: 'basic' } });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'no_matching_rule', param: 'task' });
    expect(await jobCount(broker)).toBe(before);
  });

  it('stops config parsing at a rule naming an unknown alias, naming its path', () => {
    const raw = (model: string) => ({
      redis: { url: redisUrl() },
      providers: { f: { type: 'openai', base_url: mocks.f.baseUrl } },
      models: { fast: ['f/m'] },
      tasks: { default: 'fast', summarize: [{ when: { input_tokens: { gt: 500 } }, model: 'fast' }, { model }] },
    });
    expect(() => parseConfig(raw('fast'), {}, 'test')).not.toThrow();
    expect(() => parseConfig(raw('nope'), {}, 'test')).toThrow(/tasks\.summarize\.1\.model: unknown model alias "nope"/);
  });
});

describe('tiers', () => {
  let mocks: Record<'a' | 'b' | 'c', MockServer>;
  let broker: TestBroker;

  beforeAll(async () => {
    mocks = { a: await startMock(), b: await startMock(), c: await startMock() };
    const tiered = { strategy: 'weighted', targets: [{ target: 'a/m', tier: 1 }, { target: 'b/m', tier: 1 }, { target: 'c/m', tier: 2 }] };
    // The fallback walk is the subject: breakers and health would reorder the chain once a and b fail.
    broker = await startBroker(configFor(mocks, { models: { tiered }, tasks: { default: 'tiered' }, routing: ROUTING, breaker: { failure_threshold: 1000 }, health: { min_requests: 1000 } }));
  });
  afterAll(() => closeAll(broker, Object.values(mocks)));

  it('puts both tier-1 targets before the tier-2 one in every chain, balancing tier 1 by weight', async () => {
    const jobs = await runAll(broker, Array.from({ length: 20 }, (_, i) => ({ request: chat(`tier ${i}`) })));
    for (const job of jobs) {
      expect(job.status).toBe('succeeded');
      const at = Object.fromEntries(job.routing.candidates.map((c: any) => [c.target, c]));
      expect([at['a/m'].position, at['b/m'].position].sort()).toEqual([0, 1]);
      expect(at['c/m']).toMatchObject({ tier: 2, position: 2 });
      expect(job.routing.strategy).toBe('weighted');
    }
    expect(new Set(jobs.map((j) => j.provider))).toEqual(new Set(['a', 'b']));
    expect(mocks.c.stats.calls).toBe(0);
  });

  it('falls back through both tier-1 targets, then succeeds on tier 2', async () => {
    await behave(mocks.a, { errorRate: 1, errorStatus: 503 });
    await behave(mocks.b, { errorRate: 1, errorStatus: 503 });
    const jobs = await runAll(broker, Array.from({ length: 4 }, (_, i) => ({ request: chat(`down ${i}`) })));
    for (const job of jobs) {
      expect(job.status).toBe('succeeded');
      expect(job.provider).toBe('c');
      expect(job.attempts.map((a: any) => [a.hop, a.outcome])).toEqual([[0, 'fallback'], [1, 'fallback'], [2, 'succeeded']]);
      expect(new Set(job.attempts.slice(0, 2).map((a: any) => a.provider))).toEqual(new Set(['a', 'b']));
      // The hops follow the recorded chain.
      const order = [...job.routing.candidates].sort((x: any, y: any) => x.position - y.position).map((c: any) => c.target.split('/')[0]);
      expect(job.attempts.map((a: any) => a.provider)).toEqual(order);
    }
    expect(mocks.c.stats.calls).toBe(4);
  });
});

describe('budgets', () => {
  let a: MockServer;
  let b: MockServer;
  let broker: TestBroker;
  const PLAIN = { authorization: 'Bearer plain-key-0123456789abcdef' };
  const THRIFTY = { authorization: 'Bearer thrifty-key-0123456789abcdef' };
  const OPS = { authorization: `Basic ${Buffer.from('ops:ops-password-123').toString('base64')}` };
  // One completion token at $1 each, whatever the model writes: every job on a/m costs exactly $1.
  const request = { ...chat('spend'), max_tokens: 1 };

  beforeAll(async () => {
    a = await startMock({ reportCompletionTokens: 1 });
    b = await startMock({ reportCompletionTokens: 1 });
    broker = await startBroker(configFor({ a, b }, {
      auth: {
        api_keys: [
          { name: 'plain', key: PLAIN.authorization.slice(7) },
          { name: 'thrifty', key: THRIFTY.authorization.slice(7), limits: { monthly_budget_usd: 10, downgrade_at: 0.1, downgrade_to: 'cheap' } },
        ],
        admin: { user: 'ops', password: 'ops-password-123' },
      },
      pricing: { 'a/m': { input: 0, output: 1_000_000 }, 'b/m': { input: 0, output: 0 } },
      models: {
        smart: { targets: ['a/m'], monthly_budget_usd: 2, downgrade_at: 0.5, downgrade_to: 'cheap' },
        cheap: ['b/m'],
        capped: { targets: ['a/m'], monthly_budget_usd: 1 },
        premium: ['a/m'],
      },
      tasks: { default: 'cheap' },
      routing: ROUTING,
    }));
  });
  afterAll(() => closeAll(broker, [a, b]));

  const spendSeen = (scope: `alias:${string}` | `tenant:${string}`, usd: number) => waitFor(async () => broker.runtime.routing.spendOf(scope) >= usd * 1e10, 5000);
  const crossingLines = () => broker.logs.lines.filter((l) => String(l.msg).startsWith('budget passed its downgrade threshold'));

  it('routes an alias to its downgrade once half its budget is spent, logging and counting the crossing once', async () => {
    const first = await run(broker, { model: 'smart', request }, PLAIN);
    expect(first).toMatchObject({ status: 'succeeded', provider: 'a', cost_usd: 1 });
    expect(first.routing).toMatchObject({ alias: 'smart' });
    expect(first.routing).not.toHaveProperty('downgraded');
    await spendSeen('alias:smart', 1);

    const aCalls = a.stats.calls;
    const later = await runAll(broker, Array.from({ length: 3 }, () => ({ model: 'smart', request })), PLAIN);
    for (const job of later) {
      expect(job).toMatchObject({ status: 'succeeded', provider: 'b', model: 'smart' });
      expect(job.routing.alias).toBe('cheap');
      expect(job.routing.downgraded).toEqual({ from: 'smart', reason: 'alias_budget', share: 0.5 });
    }
    expect(a.stats.calls).toBe(aCalls);
    await waitFor(async () => crossingLines().length > 0, 5000);
    await run(broker, { model: 'smart', request }, PLAIN);
    expect(crossingLines()).toHaveLength(1);
    expect(crossingLines()[0]).toMatchObject({ level: 40, alias: 'smart', share: 0.5, monthly_budget_usd: 2, downgrade_to: 'cheap' });

    const text = await metricsOf(broker, OPS);
    expect(sample(text, 'switchyard_budget_crossings_total', { scope: 'alias', level: 'downgrade' })).toBe(1);
    expect(sample(text, 'switchyard_routing_downgrades_total', { from: 'smart', to: 'cheap', reason: 'alias_budget' })).toBe(4);
  });

  it('refuses an alias whose budget is spent with 402 alias_budget_exceeded', async () => {
    expect((await run(broker, { model: 'capped', request }, PLAIN)).cost_usd).toBe(1);
    await spendSeen('alias:capped', 1);
    const before = await jobCount(broker, PLAIN);
    const res = await submit(broker, { model: 'capped', request }, PLAIN);
    expect(res.status).toBe(402);
    expect(res.body.error).toMatchObject({ code: 'alias_budget_exceeded', type: 'budget_exceeded_error', param: 'model' });
    expect(await jobCount(broker, PLAIN)).toBe(before);
  });

  it('refuses a bulk request holding a job for a spent alias with 402 alias_budget_exceeded, enqueueing none', async () => {
    await spendSeen('alias:capped', 1);
    const before = await jobCount(broker, PLAIN);
    const res = await broker.call('POST', '/v1/jobs/bulk', { jobs: [{ model: 'cheap', request }, { model: 'capped', request }] }, PLAIN);
    expect(await jobCount(broker, PLAIN)).toBe(before);
    expect(res.body.error.message).toMatch(/jobs\[1\]\.model: the alias "capped" has spent its \$1 monthly budget/);
    // DESIGN section 8: a spent budget is refused with 402, whichever way the job arrives.
    expect({ status: res.status, code: res.body.error.code }).toEqual({ status: 402, code: 'alias_budget_exceeded' });
  });

  it('downgrades a tenant past its own downgrade_at, and only that tenant', async () => {
    const first = await run(broker, { model: 'premium', request }, THRIFTY);
    expect(first).toMatchObject({ status: 'succeeded', provider: 'a', cost_usd: 1 });
    await spendSeen('tenant:thrifty', 1);

    const job = await run(broker, { model: 'premium', request }, THRIFTY);
    expect(job).toMatchObject({ status: 'succeeded', provider: 'b' });
    expect(job.routing.alias).toBe('cheap');
    expect(job.routing.downgraded).toEqual({ from: 'premium', reason: 'tenant_budget', share: 0.1 });
    const other = await run(broker, { model: 'premium', request }, PLAIN);
    expect(other.provider).toBe('a');
    expect(other.routing).not.toHaveProperty('downgraded');

    await waitFor(async () => broker.logs.lines.some((l) => l.tenant === 'thrifty' && String(l.msg).startsWith('budget passed its downgrade threshold')), 5000);
    const text = await metricsOf(broker, OPS);
    expect(sample(text, 'switchyard_budget_crossings_total', { scope: 'tenant', level: 'downgrade' })).toBe(1);
    expect(sample(text, 'switchyard_routing_downgrades_total', { from: 'premium', to: 'cheap', reason: 'tenant_budget' })).toBe(1);
  });
});

describe('prompt-prefix affinity', () => {
  let mocks: Record<'a' | 'b', MockServer>;
  let broker: TestBroker;
  const PREFIX = 'You are a careful assistant. Follow the house style guide exactly. '.repeat(5).slice(0, 300);
  const shared = (i: number) => chat(`${PREFIX} question ${i}`);

  beforeAll(async () => {
    mocks = { a: await startMock(), b: await startMock() };
    const sticky = { strategy: 'weighted', targets: ['a/m', 'b/m'], affinity: { min_prefix_chars: 200 } };
    broker = await startBroker(configFor(mocks, { models: { sticky }, tasks: { default: 'sticky' }, routing: ROUTING, breaker: { failure_threshold: 1, cooldown_ms: 60_000 } }));
  });
  afterAll(() => closeAll(broker, Object.values(mocks)));

  it('spreads short prompts over both targets, without affinity', async () => {
    const jobs = await runAll(broker, Array.from({ length: 20 }, (_, i) => ({ request: chat(`short ${i}`) })));
    expect(jobs.every((j) => j.status === 'succeeded' && !('affinity' in j.routing))).toBe(true);
    expect(new Set(jobs.map((j) => j.provider))).toEqual(new Set(['a', 'b']));
  });

  let stuck: 'a' | 'b';
  it('sends jobs sharing a long prefix to the target that served it, once one has succeeded', async () => {
    const first = await run(broker, { request: shared(0) });
    expect(first).toMatchObject({ status: 'succeeded', routing: { affinity: 'miss' } });
    // Each API process remembers a lookup briefly, a miss included: ask until the success is seen.
    let i = 1;
    const hit = await waitFor(async () => {
      const job = await run(broker, { request: shared(i++) });
      return job.routing.affinity === 'hit' && job;
    }, 10_000, 100);
    stuck = hit.provider;
    const jobs = await runAll(broker, Array.from({ length: 12 }, (_, k) => ({ request: shared(100 + k) })));
    for (const job of jobs) expect(job).toMatchObject({ status: 'succeeded', provider: stuck, routing: { affinity: 'hit' } });
  });

  it('loses the affinity when that target\'s breaker opens, and the jobs go to the other', async () => {
    const other = stuck === 'a' ? 'b' : 'a';
    // A short, direct job opens the breaker; a shared-prefix job failing over would move the affinity itself.
    await behave(mocks[stuck], { errorRate: 1, errorStatus: 503 });
    expect((await run(broker, { model: `${stuck}/m`, request: chat('trip') })).status).toBe('failed');
    await waitFor(async () => broker.runtime.breakers.isUnavailable(stuck), 5000);
    const calls = mocks[stuck].stats.calls;
    // Slow answers keep every one of these jobs routed before any success moves the affinity.
    await behave(mocks[other], { latencyMs: 300 });
    const jobs = await runAll(broker, Array.from({ length: 5 }, (_, k) => ({ request: shared(200 + k) })));
    for (const job of jobs) {
      expect(job).toMatchObject({ status: 'succeeded', provider: other, routing: { affinity: 'lost' } });
      expect(job.routing.candidates.find((c: any) => c.target === `${stuck}/m`)).toMatchObject({ demoted: 'circuit_open', position: 1 });
    }
    expect(mocks[stuck].stats.calls).toBe(calls);
  });
});

describe('routing observability', () => {
  let mocks: Record<'a' | 'b', MockServer>;
  let broker: TestBroker;
  const providers = async () => Object.fromEntries(((await broker.call('GET', '/v1/providers')).body.data as any[]).map((p) => [p.name, p]));

  beforeAll(async () => {
    // a fails only the calls that say so: an exact share of fallbacks, and an error rate past the line.
    mocks = { a: await startMock({ rules: [{ match: 'fail-me', status: 503 }] }), b: await startMock() };
    broker = await startBroker(configFor(mocks, {
      models: { chain: ['a/m', 'b/m'] },
      tasks: { default: 'chain' },
      routing: ROUTING,
      breaker: { failure_threshold: 1000 },
      health: { min_requests: 4, max_error_rate: 0.4 },
    }));
  });
  afterAll(() => closeAll(broker, Object.values(mocks)));

  it('shows health, fallback share and per-target attempts on GET /v1/providers, and demotes the degraded provider', async () => {
    const jobs = await runAll(broker, ['fail-me 1', 'ok 1', 'fail-me 2', 'ok 2'].map((c) => ({ request: chat(c) })));
    expect(jobs.map((j) => j.provider)).toEqual(['b', 'a', 'b', 'a']);

    // Workers fold their counts into Redis once a second.
    const view = await waitFor(async () => {
      const v = await providers();
      return v.a.targets.length > 0 && v.b.targets.length > 0 && v.a.health.state === 'degraded' && v;
    }, 5000, 100);
    expect(view.a.targets).toEqual([expect.objectContaining({ target: 'a/m', attempts: 4, fallbacks: 2, fallback_share: 0.5 })]);
    expect(view.a.fallback_share).toBe(0.5);
    expect(view.a.health).toMatchObject({ state: 'degraded', reason: 'error_rate', requests: 4, error_rate: 0.5 });
    expect(view.b.targets).toEqual([expect.objectContaining({ target: 'b/m', attempts: 2, fallbacks: 0, fallback_share: 0 })]);
    expect(view.b.fallback_share).toBe(0);
    expect(view.b.health.state).toBe('healthy');
    expect(view.a.in_flight).toBe(0);

    // Once routing has read the judgement, a degraded provider goes last (not removed).
    await waitFor(async () => broker.runtime.routing.health('a').state === 'degraded', 5000);
    const calls = mocks.a.stats.calls;
    const job = await run(broker, { request: chat('after') });
    expect(job.provider).toBe('b');
    expect(job.routing.candidates).toEqual([expect.objectContaining({ target: 'a/m', demoted: 'degraded', position: 1 }), expect.objectContaining({ target: 'b/m', position: 0 })]);
    expect(mocks.a.stats.calls).toBe(calls);
  });

  it('counts calls in flight per provider', async () => {
    await behave(mocks.b, { latencyMs: 1000 });
    const posted = await Promise.all([1, 2].map((i) => submit(broker, { model: 'b/m', request: chat(`slow ${i}`) })));
    await waitFor(async () => (await providers()).b.in_flight === 2, 5000, 50);
    await Promise.all(posted.map((p) => broker.call('GET', `/v1/jobs/${p.body.id}?wait=30`)));
    // A call counts until BullMQ completes its hop, just after the settle that answered the long-poll.
    await waitFor(async () => (await providers()).b.in_flight === 0, 5000, 50);
  });

  it('exports the alias fallback ratio and routed jobs on /metrics', async () => {
    // Once every attempt so far is flushed (b: two fallbacks taken, the one after, two slow ones)...
    const text = await waitFor(async () => {
      const t = await metricsOf(broker);
      return sample(t, 'switchyard_target_attempts_total', { target: 'b/m', kind: 'all' }) === 5 && t;
    }, 5000, 100);
    // ...five jobs were routed by the alias (the four, then the one after), two of which fell back.
    expect(sample(text, 'switchyard_alias_fallback_ratio', { alias: 'chain' })).toBe(0.4);
    expect(sample(text, 'switchyard_routed_jobs_total', { alias: 'chain', strategy: 'ordered', target: 'a/m' })).toBe(4);
    expect(sample(text, 'switchyard_routed_jobs_total', { alias: 'chain', strategy: 'ordered', target: 'b/m' })).toBe(1);
    expect(sample(text, 'switchyard_routing_skips_total', { target: 'a/m', reason: 'degraded' })).toBe(1);
    expect(sample(text, 'switchyard_target_attempts_total', { target: 'a/m', kind: 'fallback' })).toBe(2);
    expect(sample(text, 'switchyard_provider_health', { provider: 'a' })).toBe(1);
  });
});
