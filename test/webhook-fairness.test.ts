import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, testRedis, waitFor } from './support/broker.js';
import { Receiver } from './support/receiver.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const KEYS = { a: 'sy-fair-tenant-a-0123456789', b: 'sy-fair-tenant-b-0123456789', c: 'sy-fair-tenant-c-0123456789', d: 'sy-fair-tenant-d-0123456789' };
const as = (key: string) => ({ authorization: `Bearer ${key}` });

/**
 * A receiver that answers 200 with its headers at once, then never finishes its body: it trickles
 * a byte a second (every idle timer stays happy, so only a total deadline ends the attempt), or,
 * flooding, writes as fast as it is read. It counts the connections open at once, which is how
 * many deliveries the broker has in flight to it.
 */
class TrickleReceiver {
  constructor(private readonly mode: 'trickle' | 'flood' = 'trickle') {}

  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly responses = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();
  open = 0;
  maxOpen = 0;
  connections = 0;
  requests = 0;
  /** When each request's body had arrived (ms), in order. */
  readonly arrivals: number[] = [];
  /** Bytes a flooding receiver got to write before the broker hung up. */
  flooded = 0;
  port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        this.requests++;
        this.arrivals.push(Date.now());
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.flushHeaders();
        this.responses.add(res);
        res.on('close', () => this.responses.delete(res));
        if (this.mode === 'flood') {
          const chunk = Buffer.alloc(64 * 1024, 'x');
          const pour = () => {
            while (!res.destroyed && res.write(chunk)) this.flooded += chunk.length;
          };
          res.on('drain', pour);
          pour();
          return;
        }
        const timer = setInterval(() => res.write('.'), 1000);
        this.timers.add(timer);
        res.on('close', () => (clearInterval(timer), this.timers.delete(timer)));
      });
    });
    this.server.on('connection', (socket: Socket) => {
      this.connections++;
      this.open++;
      this.maxOpen = Math.max(this.maxOpen, this.open);
      this.sockets.add(socket);
      socket.on('close', () => (this.open--, this.sockets.delete(socket)));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/slow`;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

describe('a whole-attempt deadline', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let trickle: TrickleReceiver;

  beforeAll(async () => {
    mock = await startMock();
    trickle = await new TrickleReceiver().start();
    broker = await startBroker(
      configFor({ p: mock }, { webhooks: { secret: SECRET, allow_private_targets: true, timeout_ms: 1500, retry_schedule_s: [0], concurrency: 3, max_in_flight_per_tenant: 100 } }),
    );
  });
  afterAll(async () => {
    await broker.close();
    await trickle.stop();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  const submit = async () => (await broker.call('POST', '/v1/jobs', { request: chat(), webhook_url: trickle.url })).body.id as string;
  const attempts = async (id: string) => ((await broker.call('GET', `/v1/jobs/${id}`)).body.webhook?.attempts ?? []) as { status_code: number | null; latency_ms: number; error?: string }[];

  it('ends an attempt to a receiver that trickles its body at timeout_ms, and closes the connection', async () => {
    const id = await submit();
    // Idle timers of 1500 ms, reset by every byte, would never fire: the attempt would not end.
    const [attempt] = await waitFor(async () => ((await attempts(id)).length === 1 ? attempts(id) : null), 6000);
    expect(attempt!.error).toMatch(/timed out/);
    expect(attempt!.status_code).toBe(200);
    expect(attempt!.latency_ms).toBeGreaterThanOrEqual(1450);
    expect(attempt!.latency_ms).toBeLessThan(2500);
    expect((await broker.call('GET', `/v1/jobs/${id}`)).body.webhook.status).toBe('failed');
    // The socket is destroyed, not left to the keep-alive pool with a body still arriving.
    await waitFor(async () => trickle.open === 0, 1000);
  });

  it('reads only so much of a response body: a 2xx that never ends still counts, and the connection is closed', async () => {
    const flood = await new TrickleReceiver('flood').start();
    try {
      const { id } = (await broker.call('POST', '/v1/jobs', { request: chat(), webhook_url: flood.url })).body;
      const [attempt] = await waitFor(async () => ((await attempts(id)).length === 1 ? attempts(id) : null), 6000);
      expect(attempt).toMatchObject({ status_code: 200 });
      expect(attempt).not.toHaveProperty('error');
      expect(attempt!.latency_ms).toBeLessThan(1000);
      await waitFor(async () => flood.open === 0, 1000);
      // Whatever the socket buffers took, nowhere near what a reader to the end would have pulled in 1.5 s.
      expect(flood.flooded).toBeLessThan(16 * 1024 * 1024);
    } finally {
      await flood.stop();
    }
  });

  it('runs webhooks.concurrency deliveries at once in a sender', async () => {
    trickle.maxOpen = 0;
    const from = trickle.arrivals.length;
    const ids = await Promise.all(Array.from({ length: 6 }, submit));
    await waitFor(async () => (await Promise.all(ids.map(attempts))).every((a) => a.length === 1), 10_000);
    expect(trickle.maxOpen).toBeGreaterThanOrEqual(3);
    // Each delivery lasts its whole deadline (the body never ends), so with three at once the
    // fourth can only start when the first is cut: no four starts within one deadline. (Counting
    // open sockets instead races the closing of the ones just cut.) The starts are the sender's
    // own (each attempt's `at`, in ms): when a request reached the receiver also counts how long
    // its connection took, which a loaded machine stretched past the margin for the first of four.
    expect(trickle.arrivals.slice(from)).toHaveLength(6);
    const starts = (await broker.runtime.store.getMany(ids)).map((j) => j!.webhook_attempts[0]!.at).sort((a, b) => a - b);
    for (let i = 3; i < starts.length; i++) expect(starts[i]! - starts[i - 3]!).toBeGreaterThanOrEqual(1400);
  });
});

describe('per-tenant fairness in the senders', () => {
  let mock: MockServer;
  let api: TestBroker;
  let second: TestBroker;
  let trickle: TrickleReceiver;
  let healthy: Receiver;
  const DEADLINE_MS = 3000;
  const CAP = 2;
  const SENDERS = 2;

  beforeAll(async () => {
    mock = await startMock();
    trickle = await new TrickleReceiver().start();
    healthy = await new Receiver().start();
    const config = configFor(
      { p: mock },
      {
        auth: { api_keys: [{ name: 'tenant-a', key: KEYS.a }, { name: 'tenant-b', key: KEYS.b }, { name: 'tenant-c', key: KEYS.c }, { name: 'tenant-d', key: KEYS.d }] },
        webhooks: { secret: SECRET, allow_private_targets: true, timeout_ms: DEADLINE_MS, retry_schedule_s: [0], concurrency: 4, max_in_flight_per_tenant: CAP },
      },
    );
    // Two sender processes on one Redis, each holding a slow tenant to its cap of its own slots.
    api = await startBroker(config);
    second = await startBroker(config, { api: false });
  });
  afterAll(async () => {
    await trickle.stop();
    await Promise.all([api.close(), second.close()]);
    await healthy.stop();
    await mock.app.close();
    await dropPrefix(api.prefix);
  });

  const finishedAt = async (id: string) => (await api.runtime.store.get(id))?.finished_at ?? null;
  const receivedAt = (id: string) => healthy.received.find((r) => JSON.parse(r.body).data.id === id)?.at;

  it("keeps one tenant's slow receiver from delaying another tenant's webhooks", async () => {
    // 16 trickling deliveries would fill both senders' 8 slots for 3 s a round, twice over.
    const slow = await Promise.all(Array.from({ length: 16 }, async () => (await api.call('POST', '/v1/jobs', { request: chat(), webhook_url: trickle.url }, as(KEYS.a))).body.id as string));
    expect(slow).toHaveLength(16);
    await waitFor(async () => trickle.open >= CAP, 5000);

    const prompt: string[] = [];
    for (let i = 0; i < 20; i++) {
      prompt.push((await api.call('POST', '/v1/jobs', { request: chat(), webhook_url: healthy.url }, as(KEYS.b))).body.id as string);
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitFor(async () => prompt.every((id) => receivedAt(id) !== undefined), 10_000);
    const latencies = await Promise.all(prompt.map(async (id) => receivedAt(id)! - (await finishedAt(id))!));
    expect(percentile(latencies, 95)).toBeLessThan(750);

    // Past the first round of deadlines, new deliveries to A take the freed slots: still its cap in each sender.
    await waitFor(async () => trickle.connections >= 2 * CAP * SENDERS, 15_000);
    // Counted on the senders' own attempts (each from its start to its end, in ms): the receiver's
    // open sockets also count one just cut whose close it has not seen yet.
    const attemptsOf = async () => (await api.runtime.store.getMany(slow)).flatMap((j) => j!.webhook_attempts);
    await waitFor(async () => (await attemptsOf()).length >= 2 * CAP * SENDERS, 10_000);
    // A slot is released once its attempt is recorded, so an end and a start at the same ms do not overlap.
    const edges = (await attemptsOf()).flatMap((a) => [[a.at, 1], [a.at + a.latency_ms, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let open = 0;
    let most = 0;
    for (const [, step] of edges) most = Math.max(most, (open += step));
    expect(most).toBeLessThanOrEqual(CAP * SENDERS);
    expect(most).toBeGreaterThanOrEqual(CAP);
  });
});

describe('fairness without a slow tenant in the way', () => {
  let mock: MockServer;
  let api: TestBroker;
  let second: TestBroker;
  let healthy: Receiver;
  const CAP = 2;
  const SENDERS = 2;

  beforeAll(async () => {
    mock = await startMock();
    healthy = await new Receiver().start();
    const config = configFor(
      { p: mock },
      {
        auth: { api_keys: [{ name: 'tenant-c', key: KEYS.c }, { name: 'tenant-d', key: KEYS.d }] },
        webhooks: { secret: SECRET, allow_private_targets: true, timeout_ms: 3000, retry_schedule_s: [0], concurrency: 4, max_in_flight_per_tenant: CAP },
      },
    );
    api = await startBroker(config);
    second = await startBroker(config, { api: false });
  });
  afterAll(async () => {
    await Promise.all([api.close(), second.close()]);
    await healthy.stop();
    await mock.app.close();
    await dropPrefix(api.prefix);
  });

  const receivedAt = (id: string) => healthy.received.find((r) => JSON.parse(r.body).data.id === id)?.at;

  it('does not hold a tenant whose receiver is quick to its cap', async () => {
    // With the cap at 2 and four slots in each sender, 40 quick deliveries of one tenant soon
    // run more than two at once: its pace is known to be quick after the first.
    healthy.script.push(...Array.from({ length: 40 }, () => ({ status: 200, delayMs: 150 })));
    const before = healthy.maxConcurrent;
    healthy.maxConcurrent = 0;
    const ids = await Promise.all(Array.from({ length: 40 }, async () => (await api.call('POST', '/v1/jobs', { request: chat(), webhook_url: healthy.url }, as(KEYS.c))).body.id as string));
    await waitFor(async () => ids.every((id) => receivedAt(id) !== undefined), 15_000);
    expect(healthy.maxConcurrent).toBeGreaterThan(CAP * SENDERS);
    healthy.maxConcurrent = before;
  });

  it('hands a capped delivery back to wait, and waiting is not an attempt', async () => {
    // A new tenant's pace is unknown, so it is held to its cap; its third delivery in a sender waits.
    healthy.script.push(...Array.from({ length: 6 }, () => ({ status: 200, delayMs: 1200 })));
    const ids = await Promise.all(Array.from({ length: 6 }, async () => (await api.call('POST', '/v1/jobs', { request: chat(), webhook_url: healthy.url }, as(KEYS.d))).body.id as string));
    // Done, not just received: the receiver answers 1.2 s after the request arrives.
    const deliveries = await waitFor(async () => {
      const all = await Promise.all(ids.map((id) => api.runtime.webhooks.queue.getJob(`${id}-evt`)));
      return all.every((d) => d?.finishedOn) ? all : null;
    }, 15_000);
    // One attempt each is all retry_schedule_s [0] allows: had a wait counted, some would have failed.
    expect(deliveries.every((d) => d?.attemptsMade === 1)).toBe(true);
    expect(deliveries.some((d) => (d?.attemptsStarted ?? 0) > 1)).toBe(true);
  });
});

describe('redelivery', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let receiver: Receiver;
  const R1 = 'sy-redeliver-r1-0123456789';
  const R2 = 'sy-redeliver-r2-0123456789';
  const R3 = 'sy-redeliver-r3-0123456789';

  beforeAll(async () => {
    mock = await startMock();
    receiver = await new Receiver().start();
    broker = await startBroker(
      configFor(
        { p: mock },
        {
          auth: { api_keys: [{ name: 'r1', key: R1 }, { name: 'r2', key: R2 }, { name: 'r3', key: R3 }] },
          webhooks: { secret: SECRET, allow_private_targets: true, timeout_ms: 3000, retry_schedule_s: [0, 1], redeliveries_per_job_per_hour: 3, redeliveries_per_tenant_per_minute: 4 },
        },
      ),
    );
  });
  afterAll(async () => {
    await broker.close();
    await receiver.stop();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  const submit = async (key: string) => {
    const { id } = (await broker.call('POST', '/v1/jobs', { request: chat('redeliver me'), webhook_url: receiver.url }, as(key))).body;
    await waitFor(async () => (await broker.call('GET', `/v1/jobs/${id}`, undefined, as(key))).body.webhook.status === 'delivered');
    return id as string;
  };
  const redeliver = (id: string, key: string) => broker.call('POST', `/v1/jobs/${id}/webhook/redeliver`, undefined, as(key));
  const deliveriesFor = (id: string) => receiver.received.filter((r) => JSON.parse(r.body).data.id === id);
  const settled = (id: string) => waitFor(async () => !(await broker.runtime.webhooks.queue.getJob(`${id}-evt-redeliver`)));
  const allDeliveries = () => broker.runtime.webhooks.queue.getJobs(['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'], 0, -1);

  it('allows one pending redelivery per job and a few an hour, sending the original bytes', async () => {
    const id = await submit(R1);
    receiver.script.push({ status: 200, delayMs: 1000 });
    const first = await redeliver(id, R1);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ id, object: 'job' });
    const again = await redeliver(id, R1);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ type: 'conflict_error', code: 'redelivery_pending', param: 'id' });
    await settled(id);
    const [original, redelivered] = deliveriesFor(id);
    expect(redelivered!.headers['webhook-id']).toBe(original!.headers['webhook-id']);
    expect(redelivered!.body).toBe(original!.body);

    // Once finished, a new one replaces it; the 409 above did not use up the window.
    for (let i = 0; i < 2; i++) {
      expect((await redeliver(id, R1)).status).toBe(202);
      await settled(id);
    }
    const over = await redeliver(id, R1);
    expect(over.status).toBe(429);
    expect(over.body.error).toMatchObject({ type: 'rate_limit_error', code: 'job_redelivery_rate_limited', param: 'id' });
    const retryAfter = Number(over.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(3000);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(deliveriesFor(id)).toHaveLength(4);
    expect(new Set(deliveriesFor(id).map((d) => d.body)).size).toBe(1);

    // The tenant's window (4 a minute) has one left: another job takes it, a third is refused.
    const other = await submit(R1);
    const third = await submit(R1);
    expect((await redeliver(other, R1)).status).toBe(202);
    const tenantOver = await redeliver(third, R1);
    expect(tenantOver.status).toBe(429);
    expect(tenantOver.body.error).toMatchObject({ type: 'rate_limit_error', code: 'tenant_redelivery_rate_limited' });
    expect(Number(tenantOver.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(tenantOver.headers.get('retry-after'))).toBeLessThanOrEqual(60);
  });

  it('keeps at most one redelivery, carrying no copy of the event, however often it is asked for', async () => {
    const id = await submit(R2);
    const statuses: number[] = [];
    for (let burst = 0; burst < 5; burst++) {
      statuses.push(...(await Promise.all(Array.from({ length: 10 }, () => redeliver(id, R2)))).map((r) => r.status));
      const pending = (await allDeliveries()).filter((j) => j.id === `${id}-evt-redeliver`);
      expect(pending.length).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(statuses).toHaveLength(50);
    expect(new Set(statuses)).toEqual(new Set([202, 409, 429]));
    expect(statuses.filter((s) => s === 202).length).toBeLessThanOrEqual(3);
    await settled(id);
    expect(deliveriesFor(id).length).toBeLessThanOrEqual(1 + 3);
    expect(deliveriesFor(id).length).toBe(1 + statuses.filter((s) => s === 202).length);

    // The event's one delivery carries it; redeliveries carry ids only (the body is rebuilt).
    const jobs = await allDeliveries();
    expect(jobs.length).toBeGreaterThan(0);
    for (const j of jobs.filter((j) => j.data.jobId)) {
      expect(j.data.tenant).toMatch(/^r[123]$/);
      if (j.data.redelivery) {
        expect(j.data).not.toHaveProperty('body');
        expect(JSON.stringify(j.data).length).toBeLessThan(300);
      } else {
        expect(j.id).toBe(`${j.data.jobId}-evt`);
      }
    }
  });

  it('gives up a redelivery, saying why, when the job record is gone, and recreates nothing', async () => {
    const id = await submit(R3);
    receiver.script.push({ status: 500 });
    expect((await redeliver(id, R3)).status).toBe(202);
    await waitFor(async () => deliveriesFor(id).length === 2);
    const redis = testRedis();
    try {
      // As if the record had expired between two attempts of the redelivery.
      await redis.del(broker.runtime.store.keys.job(id));
      const failed = await waitFor(async () => {
        const d = await broker.runtime.webhooks.queue.getJob(`${id}-evt-redeliver`);
        if (!d) return null;
        return (await d.getState()) === 'failed' ? d : null;
      }, 8000).catch(() => null);
      // Redeliveries are removed when they end, so the log says how it ended.
      if (failed) expect(failed.failedReason).toMatch(/is gone .*can no longer be built/);
      await waitFor(async () => broker.logs.lines.some((l) => l.job === id && String(l.msg).includes('is gone')), 8000);
      expect(deliveriesFor(id)).toHaveLength(2);
      // Giving up writes nothing back: no stub of the expired record appears.
      expect(await redis.exists(broker.runtime.store.keys.job(id))).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('still delivers an event whose record expired after it ended, without recreating the record', async () => {
    receiver.script.push({ status: 500 });
    const { id } = (await broker.call('POST', '/v1/jobs', { request: chat(), webhook_url: receiver.url }, as(R1))).body;
    await waitFor(async () => deliveriesFor(id).length === 1);
    const redis = testRedis();
    try {
      await redis.del(broker.runtime.store.keys.job(id));
      // The event's own delivery carries it: the retry goes out, and writes nothing back.
      await waitFor(async () => deliveriesFor(id).length === 2, 8000);
      expect(deliveriesFor(id)[1]!.body).toBe(deliveriesFor(id)[0]!.body);
      await new Promise((r) => setTimeout(r, 300));
      expect(await redis.exists(broker.runtime.store.keys.job(id))).toBe(0);
      expect(await redis.exists(broker.runtime.store.keys.webhookAttempts(id))).toBe(1);
    } finally {
      redis.disconnect();
    }
  });
});
