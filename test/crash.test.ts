import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, type MockServer, redisUrl, startMock, testPrefix, waitFor } from './support/broker.js';
import { startFleet } from './support/fleet.js';

const JOBS = 2000;

/** SIGKILL a worker process mid-run: no job is lost, none ends twice. */
describe('crash safety', () => {
  let mock: MockServer;
  let fleet: Awaited<ReturnType<typeof startFleet>>;

  beforeAll(async () => {
    // Slow enough that the victim alone would need about 7 s for every job: it is still mid-call
    // when the survivor (a few seconds to start) is up and the kill comes.
    mock = await startMock({ latencyMs: 100, jitterMs: 100 });
    fleet = await startFleet({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: { mock: { type: 'openai', base_url: mock.baseUrl, max_in_flight: 40 } },
      models: { fast: ['mock/m'] },
      tasks: { default: 'fast' },
      // Short locks so the test sees recovery in seconds; production keeps 30 s / 15 s.
      workers: { lock_ms: 2000, stalled_interval_ms: 1000 },
    });
  });
  afterAll(async () => {
    await fleet.close();
    await mock.app.close();
  });

  it(`loses none of ${JOBS} jobs and finishes none twice when a worker is SIGKILLed mid-call`, async () => {
    const { api, ends } = fleet;
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, (_, k) => api.call('POST', '/v1/jobs', { request: chat(`crash ${i + k}`) })),
      );
      ids.push(...batch.map((r) => r.body.id as string));
    }
    const victim = await fleet.spawnWorker();
    await waitFor(async () => victim.lines.filter((l) => l.msg === 'attempt').length >= 200, 60_000);
    const survivor = await fleet.spawnWorker();
    // Kill while both are busy: the victim holds up to 40 calls in flight.
    const inFlight = mock.stats.in_flight;
    await victim.stop('SIGKILL');
    expect(inFlight).toBeGreaterThan(0);
    expect(ends.size).toBeLessThan(JOBS);

    await waitFor(async () => ends.size >= JOBS, 90_000, 200);
    // Give any duplicate a chance to show itself.
    await new Promise((r) => setTimeout(r, 2500));
    const jobs = await api.runtime.store.getMany(ids);
    expect(jobs.filter((j) => j?.status !== 'succeeded').map((j) => [j?.id, j?.status])).toEqual([]);
    expect(jobs.every((j) => (j!.result as { object: string }).object === 'chat.completion')).toBe(true);
    expect([...ends.values()].filter((n) => n !== 1)).toEqual([]);
    expect(ends.size).toBe(JOBS);
    // The survivor picked up the hops the victim held mid-call and ran them again.
    const reruns = survivor.lines.filter((l) => l.msg === 'attempt' && l.rerun === true);
    expect(reruns.length).toBeGreaterThan(0);
    // At least once per job, and more where a killed call had already reached the provider.
    expect(mock.stats.calls).toBeGreaterThan(JOBS);
  }, 150_000);
});
