import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from './support/process.js';
import { chat, type MockServer, redisUrl, startMock, testPrefix, waitFor } from './support/broker.js';
import { startFleet } from './support/fleet.js';

const JOBS = 400;

/** Workers replaced one at a time with SIGTERM while jobs flow: none lost, none finished twice. */
describe('rolling restart of worker processes under load', () => {
  let mock: MockServer;
  let fleet: Awaited<ReturnType<typeof startFleet>>;

  beforeAll(async () => {
    // Calls outlast the shutdown grace, so every restart hands calls back mid-flight.
    mock = await startMock({ latencyMs: 400, jitterMs: 400 });
    fleet = await startFleet({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: { mock: { type: 'openai', base_url: mock.baseUrl, max_in_flight: 30 } },
      models: { fast: ['mock/m'] },
      tasks: { default: 'fast' },
      workers: { lock_ms: 5000, stalled_interval_ms: 2000, shutdown_grace_ms: 200 },
    });
  });
  afterAll(async () => {
    await fleet.close();
    await mock.app.close();
  });

  it(`finishes all ${JOBS} jobs exactly once across four restarts`, async () => {
    const { api, ends } = fleet;
    let live = [await fleet.spawnWorker(), await fleet.spawnWorker()];
    const bulk = await api.call('POST', '/v1/jobs/bulk', { jobs: Array.from({ length: JOBS }, (_, i) => ({ request: chat(`rolling ${i}`) })) });
    expect(bulk.status).toBe(202);
    const ids: string[] = bulk.body.data.map((j: { id: string }) => j.id);

    const stopped: BrokerProcess[] = [];
    for (let round = 0; round < 4; round++) {
      await new Promise((r) => setTimeout(r, 1200));
      const [old, other] = live;
      await old!.stop('SIGTERM');
      stopped.push(old!);
      expect(old!.child.exitCode).toBe(0);
      live = [other!, await fleet.spawnWorker()];
    }
    await waitFor(async () => ends.size >= JOBS, 90_000, 200);
    await new Promise((r) => setTimeout(r, 1000));
    const jobs = await api.runtime.store.getMany(ids);
    expect(jobs.filter((j) => j?.status !== 'succeeded').map((j) => j?.status)).toEqual([]);
    expect([...ends.values()].filter((n) => n !== 1)).toEqual([]);
    // Restarts really interrupted calls, and handed them back rather than dropping them.
    const handedBack = stopped.flatMap((w) => w.lines.filter((l) => l.msg === 'hop handed back at shutdown'));
    expect(handedBack.length).toBeGreaterThan(0);
    expect(stopped.every((w) => w.lines.some((l) => l.msg === 'shutting down'))).toBe(true);
  }, 150_000);
});
