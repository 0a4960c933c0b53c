import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { chat, dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix } from './support/broker.js';

describe('usage and cost', () => {
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    mock = await startMock({ apiKey: 'azure-key-0123456789' });
    const config = parseConfig(
      {
        redis: { url: redisUrl(), prefix: testPrefix() },
        providers: {
          az: { type: 'azure-openai', base_url: mock.url, api_version: '2024-10-21', api_key: 'azure-key-0123456789' },
          priced: { type: 'openai', base_url: mock.baseUrl, api_key: 'azure-key-0123456789' },
        },
        models: { azure: ['az/my-gpt-4o-mini-deployment'], cheap: ['priced/gpt-4o-mini'] },
        tasks: { default: 'azure' },
        pricing: { 'az/my-gpt-4o-mini-deployment': { input: 0.15, output: 0.6 } },
      },
      {},
      'test',
    );
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  const run = async (body: Record<string, unknown>) => {
    const { body: job } = await broker.call('POST', '/v1/jobs', { request: chat('how much does this cost?'), ...body });
    return (await broker.call('GET', `/v1/jobs/${job.id}?wait=20`)).body;
  };

  it('runs an azure-openai deployment: api-key header, deployment path, api-version', async () => {
    const job = await run({});
    expect(job.status).toBe('succeeded');
    expect(job.result.object).toBe('chat.completion');
    expect(job.result.model).toBe('my-gpt-4o-mini-deployment');
    expect(mock.stats.models['my-gpt-4o-mini-deployment']).toBe(1);
  });

  it('puts cost_usd on the job and on its attempt, from usage and the price (config override)', async () => {
    const job = await run({});
    const expected = (job.usage.prompt_tokens * 0.15 + job.usage.completion_tokens * 0.6) / 1e6;
    expect(job.cost_usd).toBeCloseTo(expected, 12);
    expect(job.attempts[0].cost_usd).toBeCloseTo(expected, 12);
    expect(job.cost_usd).toBeGreaterThan(0);
  });

  it('prices from the shipped table when the config says nothing', async () => {
    const job = await run({ model: 'cheap' });
    expect(job.cost_usd).toBeCloseTo((job.usage.prompt_tokens * 0.15 + job.usage.completion_tokens * 0.6) / 1e6, 12);
  });

  it('keeps totals per provider in GET /v1/providers', async () => {
    const before = (await broker.call('GET', '/admin/providers')).body.data.find((p: { name: string }) => p.name === 'az').totals;
    const jobs = [await run({}), await run({})];
    const after = (await broker.call('GET', '/admin/providers')).body.data.find((p: { name: string }) => p.name === 'az');
    expect(after.type).toBe('azure-openai');
    // Healthy and under no limit: not paused, although BullMQ's limiter key counts its requests.
    expect(after.queue.paused_for_ms).toBe(0);
    expect(after.totals.attempts - before.attempts).toBe(2);
    expect(after.totals.succeeded - before.succeeded).toBe(2);
    expect(after.totals.prompt_tokens - before.prompt_tokens).toBe(jobs[0].usage.prompt_tokens + jobs[1].usage.prompt_tokens);
    expect(after.totals.cost_usd - before.cost_usd).toBeCloseTo(jobs[0].cost_usd + jobs[1].cost_usd, 9);

    // The same totals, for Prometheus.
    const res = await fetch(`${broker.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    const metric = (line: RegExp) => Number(text.split('\n').find((l) => line.test(l))?.split(' ').at(-1));
    expect(metric(/^switchyard_provider_attempts_total\{provider="az",outcome="succeeded"\}/)).toBe(after.totals.succeeded);
    expect(metric(/^switchyard_provider_tokens_total\{provider="az",kind="prompt"\}/)).toBe(after.totals.prompt_tokens);
    expect(metric(/^switchyard_provider_cost_usd_total\{provider="az"\}/)).toBeCloseTo(after.totals.cost_usd, 9);
    expect(metric(/^switchyard_breaker_state\{provider="az"\}/)).toBe(0);

    // This process's own measurements sit beside the Redis totals.
    expect(metric(/^switchyard_attempts_total\{provider="az",outcome="succeeded",reason="ok"\}/)).toBeGreaterThanOrEqual(2);
    expect(metric(/^switchyard_provider_latency_seconds_count\{provider="az"\}/)).toBeGreaterThanOrEqual(2);
    expect(metric(/^switchyard_broker_overhead_seconds_count /)).toBeGreaterThanOrEqual(2);
    expect(metric(/^switchyard_jobs_submitted_total\{task="default"\}/)).toBeGreaterThanOrEqual(2);
    expect(metric(/^switchyard_jobs_finished_total\{status="succeeded",provider="az"\}/)).toBeGreaterThanOrEqual(2);
    expect(metric(/^switchyard_rate_limit_used\{provider="az",kind="requests"\}/)).toBeGreaterThanOrEqual(0);
  });

  it('serves a worker-only process\'s metrics on server.metrics_port', async () => {
    const worker = await startBroker({ ...broker.config, server: { ...broker.config.server, metrics_port: 0, host: '127.0.0.1' } }, { api: false, workers: [] });
    try {
      const text = await (await fetch(worker.runtime.metricsUrl!)).text();
      expect(text).toMatch(/switchyard_process_cpu_user_seconds_total/);
      expect(text).toMatch(/# TYPE switchyard_attempts_total counter/);
    } finally {
      await worker.close();
    }
  });
});
