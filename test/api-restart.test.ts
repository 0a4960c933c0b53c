import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/redis/embedded.js';
import { call, chat, dropPrefix, type MockServer, redisUrl, startMock, testPrefix, waitFor } from './support/broker.js';
import { type BrokerProcess, spawnBroker, writeConfig } from './support/process.js';

/** API and workers as separate processes sharing only Redis; the API dies and comes back mid-run. */
describe('API process restart with jobs in flight', () => {
  let mock: MockServer;
  let worker: BrokerProcess;
  const procs: BrokerProcess[] = [];
  const prefix = testPrefix();
  let env: Record<string, string>;
  let port: number;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 100, jitterMs: 50 });
    port = await freePort();
    const config = writeConfig({
      redis: { url: redisUrl(), prefix },
      providers: { mock: { type: 'openai', base_url: mock.baseUrl, max_in_flight: 4 } },
      models: { fast: ['mock/m'] },
      tasks: { default: 'fast' },
    });
    env = { SWITCHYARD_CONFIG: config, PORT: String(port) };
    worker = spawnBroker('worker', env);
    procs.push(worker);
    await worker.waitForLog('provider worker pools started');
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await mock.app.close();
    await dropPrefix(prefix);
  });

  it('loses no accepted job when the API is killed and restarted', async () => {
    const api1 = spawnBroker('api', env);
    procs.push(api1);
    await api1.waitForLog('API listening');
    const base = `http://127.0.0.1:${port}`;
    const ids: string[] = [];
    for (let i = 0; i < 150; i++) {
      const res = await call(base, 'POST', '/v1/jobs', { request: chat(`job ${i}`) });
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    // Kill hard while the worker is still draining the backlog.
    const before = await call(base, 'GET', '/v1/jobs?status=succeeded&limit=100');
    expect(before.body.data.length).toBeLessThan(100);
    await api1.stop('SIGKILL');
    await expect(call(base, 'GET', '/healthz')).rejects.toThrow();

    const api2 = spawnBroker('api', env);
    procs.push(api2);
    await api2.waitForLog('API listening');
    const finals = await Promise.all(ids.map((id) => call(base, 'GET', `/v1/jobs/${id}?wait=60`)));
    expect(finals.map((r) => r.body.status)).toEqual(ids.map(() => 'succeeded'));
    for (const [i, r] of finals.entries()) {
      expect(r.body.attempts).toHaveLength(1);
      expect(r.body.result.choices[0].message.content).toContain(`job ${i}`);
    }
    await waitFor(async () => mock.stats.calls >= ids.length);
    expect(mock.stats.calls).toBe(ids.length);
  });
});
