import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';

describe('priority under backlog', () => {
  let mock: MockServer;
  let api: TestBroker;
  let worker: TestBroker | undefined;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 2 });
    api = await startBroker(configFor({ primary: mock }), { workers: undefined });
  });
  afterAll(async () => {
    await worker?.close();
    await api.close();
    await mock.app.close();
    await dropPrefix(api.prefix);
  });

  it('starts urgent jobs first when a backlog drains, FIFO within a priority', async () => {
    // Least urgent submitted first, so arrival order alone would get it backwards.
    const plan: number[] = [];
    for (let i = 0; i < 12; i++) plan.push(10, 5, 1);
    const ids: string[] = [];
    for (const [i, priority] of plan.entries()) {
      const res = await api.call('POST', '/v1/jobs', { priority, request: chat(`p${priority}-#${i}`) });
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    const config = { ...api.config, providers: { primary: { ...api.config.providers.primary!, max_in_flight: 1 } } };
    worker = await startBroker(config, { api: false, workers: [] });
    await waitFor(async () => {
      const jobs = await api.runtime.store.getMany(ids);
      return jobs.every((j) => j?.status === 'succeeded');
    });
    const order = mock.stats.recent.map((text) => Number(/^p(\d+)-/.exec(text)![1]));
    expect(order).toHaveLength(plan.length);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    const within = mock.stats.recent.filter((t) => t.startsWith('p5-')).map((t) => Number(t.split('#')[1]));
    expect(within).toEqual([...within].sort((a, b) => a - b));
  });
});
