import { afterEach, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, withRedis } from './support/broker.js';

const A = 'sy-breaker-tenant-a-0123456789';
const B = 'sy-breaker-tenant-b-0123456789';
const as = (key: string) => ({ authorization: `Bearer ${key}` });

/** Calls whose body carries this marker are slow at the primary: a caller making its own calls slow. */
const SLOW = 'please-take-your-time';
const TIMEOUT_MS = 300;

/*
 * What a timeout means for a breaker other tenants share: one tenant's slow requests are its own
 * business (they time out and fall back), and must not open the provider's breaker for everyone.
 */
describe('timeouts and the shared breaker', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(tenants: boolean): Promise<{ broker: TestBroker; primary: MockServer }> {
    const primary = await startMock({ rules: [{ match: SLOW, latencyMs: 1500 }] });
    const fallback = await startMock();
    const config = configFor(
      { p: primary, q: fallback },
      {
        models: { fast: ['p/m', 'q/m'] },
        breaker: { failure_threshold: 3, cooldown_ms: 60_000 },
        ...(tenants && { auth: { api_keys: [{ name: 'a', key: A }, { name: 'b', key: B }] } }),
      },
    );
    config.providers.p!.timeout_ms = TIMEOUT_MS;
    const broker = await startBroker(config);
    cleanup.push(() => primary.app.close(), () => fallback.app.close(), () => broker.close(), () => dropPrefix(broker.prefix));
    return { broker, primary };
  }

  const run = async (broker: TestBroker, key: string | null, content: string, extra: Record<string, unknown> = {}) => {
    const headers = key ? as(key) : undefined;
    const { body } = await broker.call('POST', '/v1/jobs', { request: { ...chat(content), ...extra } }, headers);
    return (await broker.call('GET', `/v1/jobs/${body.id}?wait=20`, undefined, headers)).body;
  };
  const breakerHash = (broker: TestBroker) => withRedis((redis) => redis.hgetall(broker.runtime.store.keys.breaker('p')));

  it("does not let one tenant's slow calls open the breaker other tenants use", async () => {
    const { broker } = await setup(true);
    for (let i = 0; i < 5; i++) {
      const job = await run(broker, A, `${SLOW} ${i}`);
      // A's own job pays for its slowness: the call times out, and the job falls back.
      expect(job.status).toBe('succeeded');
      expect(job.attempts[0]).toMatchObject({ provider: 'p', outcome: 'fallback', error: { type: 'timeout', cause: 'provider' } });
      expect(job.attempts[1]).toMatchObject({ provider: 'q', outcome: 'succeeded' });
    }
    expect(broker.runtime.breakers.view('p').state).toBe('closed');
    const hash = await breakerHash(broker);
    expect(Number(hash.failures ?? 0)).toBe(0);
    expect(hash).toMatchObject({ blamed: '5', blamed_tenant: 'a' });
    // B is served by the primary straight away, as if nothing had happened.
    const b = await run(broker, B, 'an ordinary call');
    expect(b.attempts).toHaveLength(1);
    expect(b.attempts[0]).toMatchObject({ provider: 'p', outcome: 'succeeded' });
    // And B's success clears what was held against A.
    expect(await breakerHash(broker)).toMatchObject({ blamed: '0', blamed_tenant: '' });
  });

  it('opens once a second tenant corroborates the timeouts', async () => {
    const { broker, primary } = await setup(true);
    await run(broker, A, `${SLOW} 1`);
    await run(broker, A, `${SLOW} 2`);
    expect(broker.runtime.breakers.view('p').state).toBe('closed');
    await run(broker, B, `${SLOW} from b`);
    expect(broker.runtime.breakers.view('p').state).toBe('open');
    // Open means routed past, uncalled, for every tenant.
    const before = primary.stats.calls;
    const next = await run(broker, A, 'after the breaker opened');
    // The open provider goes to the back of the chain: still a last resort, not the first call.
    expect(next.attempts).toEqual([expect.objectContaining({ provider: 'q', hop: 0, outcome: 'succeeded' })]);
    expect(next.routing.candidates).toEqual([
      expect.objectContaining({ target: 'p/m', position: 1, demoted: 'circuit_open' }),
      expect.objectContaining({ target: 'q/m', position: 0 }),
    ]);
    expect(primary.stats.calls).toBe(before);
  });

  it('holds nothing against the provider for a timeout the request asked for with its own max tokens', async () => {
    const { broker } = await setup(true);
    for (const key of [A, B, A, B]) {
      // 100,000 tokens cannot be written in 300 ms at any normal rate: the request's doing.
      const job = await run(broker, key, `${SLOW} big`, { max_tokens: 100_000 });
      expect(job.attempts[0]).toMatchObject({ provider: 'p', outcome: 'fallback', error: { type: 'timeout', cause: 'request_size' } });
    }
    expect(broker.runtime.breakers.view('p').state).toBe('closed');
    const hash = await breakerHash(broker);
    expect(Number(hash.failures ?? 0)).toBe(0);
    expect(Number(hash.blamed ?? 0)).toBe(0);
  });

  it('opens on timeouts as before where there is only one tenant to serve', async () => {
    const { broker } = await setup(false);
    for (let i = 0; i < 3; i++) await run(broker, null, `${SLOW} ${i}`);
    expect(broker.runtime.breakers.view('p').state).toBe('open');
  });
});
