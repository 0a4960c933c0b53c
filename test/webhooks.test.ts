import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TargetPolicy } from '../src/delivery/target-policy.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { Receiver } from './support/receiver.js';

const secret = () => `whsec_${randomBytes(32).toString('base64')}`;
const SECRET = secret();
const PREVIOUS = secret();

describe('webhooks', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let receiver: Receiver;

  beforeAll(async () => {
    mock = await startMock();
    receiver = await new Receiver().start();
    broker = await startBroker(
      configFor({ p: mock }, { webhooks: { secret: SECRET, previous_secrets: [PREVIOUS], allow_private_targets: true, timeout_ms: 400, retry_schedule_s: [0, 1, 1, 1, 1] } }),
    );
  });
  afterAll(async () => {
    await broker.close();
    await receiver.stop();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  const submit = async (extra: Record<string, unknown> = {}, url = receiver.url) =>
    (await broker.call('POST', '/v1/jobs', { request: chat('webhook me'), webhook_url: url, ...extra })).body;
  const deliveriesFor = (jobId: string) => receiver.received.filter((r) => JSON.parse(r.body).data.id === jobId);
  const job = async (id: string) => (await broker.call('GET', `/v1/jobs/${id}`)).body;

  it('delivers job.succeeded with Standard Webhooks headers that the standardwebhooks verifier accepts, under both secrets', async () => {
    const { id } = await submit();
    await waitFor(async () => deliveriesFor(id).length === 1);
    const [d] = deliveriesFor(id);
    const event = new Webhook(SECRET).verify(d!.body, d!.headers as Record<string, string>) as { id: string; type: string; object: string; data: { id: string; status: string; result: { object: string } } };
    expect(event).toMatchObject({ object: 'event', type: 'job.succeeded', data: { id, status: 'succeeded', result: { object: 'chat.completion' } } });
    expect(d!.headers['webhook-id']).toBe(event.id);
    expect(String(d!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    // Receivers still on the previous secret keep verifying during rotation.
    expect(() => new Webhook(PREVIOUS).verify(d!.body, d!.headers as Record<string, string>)).not.toThrow();
    expect(() => new Webhook(secret()).verify(d!.body, d!.headers as Record<string, string>)).toThrow();
    await waitFor(async () => (await job(id)).webhook.status === 'delivered');
    const view = await job(id);
    expect(view.webhook).toMatchObject({ url: receiver.url, status: 'delivered', attempts: [{ attempt: 1, status_code: 200 }] });
  });

  it('retries a 500 with the same webhook-id and a fresh timestamp and signature', async () => {
    receiver.script.push({ status: 500 });
    const { id } = await submit();
    await waitFor(async () => deliveriesFor(id).length === 2);
    const [first, second] = deliveriesFor(id);
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(Number(second!.headers['webhook-timestamp'])).toBeGreaterThan(Number(first!.headers['webhook-timestamp']));
    expect(second!.headers['webhook-signature']).not.toBe(first!.headers['webhook-signature']);
    expect(second!.body).toBe(first!.body);
    for (const d of [first!, second!]) new Webhook(SECRET).verify(d.body, d.headers as Record<string, string>);
    await waitFor(async () => (await job(id)).webhook.status === 'delivered');
    expect((await job(id)).webhook.attempts.map((a: { status_code: number }) => a.status_code)).toEqual([500, 200]);
  });

  it('honours Retry-After over the schedule', async () => {
    receiver.script.push({ status: 503, headers: { 'retry-after': '2' } });
    const { id } = await submit();
    await waitFor(async () => deliveriesFor(id).length === 2, 10_000);
    const [first, second] = deliveriesFor(id);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1900);
  });

  it('stops for good on 410', async () => {
    receiver.script.push({ status: 410 });
    const { id } = await submit();
    await waitFor(async () => (await job(id)).webhook.status === 'failed');
    await new Promise((r) => setTimeout(r, 1500));
    expect(deliveriesFor(id)).toHaveLength(1);
    expect((await job(id)).webhook.attempts).toMatchObject([{ attempt: 1, status_code: 410 }]);
  });

  it('times out a slow receiver and tries again', async () => {
    receiver.script.push({ status: 200, delayMs: 1500 });
    const { id } = await submit();
    await waitFor(async () => (await job(id)).webhook.status === 'delivered', 10_000);
    const attempts = (await job(id)).webhook.attempts;
    expect(attempts[0]).toMatchObject({ status_code: null, error: 'timed out' });
    expect(attempts.at(-1)).toMatchObject({ status_code: 200 });
  });

  it('delivers once a receiver that was down comes back', async () => {
    const later = new Receiver();
    await later.start();
    const port = later.port;
    await later.stop();
    const { id } = await submit({}, `http://127.0.0.1:${port}/hooks`);
    await waitFor(async () => (await job(id)).webhook?.attempts.length >= 1);
    await new Promise((r) => setTimeout(r, 800));
    await later.start(port);
    try {
      await waitFor(async () => later.received.length === 1, 10_000);
      new Webhook(SECRET).verify(later.received[0]!.body, later.received[0]!.headers as Record<string, string>);
      await waitFor(async () => (await job(id)).webhook.status === 'delivered');
      const attempts = (await job(id)).webhook.attempts;
      expect(attempts[0].status_code).toBeNull();
      expect(attempts[0].error).toMatch(/ECONNREFUSED/);
    } finally {
      await later.stop();
    }
  });

  it('sends job.failed, job.cancelled and job.expired', async () => {
    mock.behaviour.errorRate = 1;
    mock.behaviour.errorStatus = 400;
    const failed = await submit();
    await waitFor(async () => deliveriesFor(failed.id).length === 1);
    mock.behaviour.errorRate = 0;
    expect(JSON.parse(deliveriesFor(failed.id)[0]!.body).type).toBe('job.failed');

    mock.behaviour.latencyMs = 3000;
    const cancelled = await submit();
    await broker.call('POST', `/v1/jobs/${cancelled.id}/cancel`);
    const expired = await submit({ deadline_s: 1 });
    await waitFor(async () => deliveriesFor(cancelled.id).length === 1 && deliveriesFor(expired.id).length === 1, 10_000);
    mock.behaviour.latencyMs = 0;
    expect(JSON.parse(deliveriesFor(cancelled.id)[0]!.body).type).toBe('job.cancelled');
    expect(JSON.parse(deliveriesFor(expired.id)[0]!.body).type).toBe('job.expired');
  });

  it('redelivers on request, with the same event id', async () => {
    const { id } = await submit();
    await waitFor(async () => (await job(id)).webhook.status === 'delivered');
    const res = await broker.call('POST', `/v1/jobs/${id}/webhook/redeliver`);
    expect(res.status).toBe(202);
    await waitFor(async () => deliveriesFor(id).length === 2);
    const [a, b] = deliveriesFor(id);
    expect(b!.headers['webhook-id']).toBe(a!.headers['webhook-id']);
    await waitFor(async () => (await job(id)).webhook.attempts.length === 2);
    expect((await job(id)).webhook.attempts[1]).toMatchObject({ redelivery: true, status_code: 200 });
    expect((await broker.call('POST', '/v1/jobs/job_nope/webhook/redeliver')).status).toBe(404);
  });

  it('hands on an event left in the outbox by a crash', async () => {
    const apiOnly = await startBroker(broker.config, { workers: undefined });
    try {
      // Ended by a process that died before dispatching: only the outbox knows.
      const { id } = await apiOnly.call('POST', '/v1/jobs', { request: chat(), webhook_url: receiver.url }).then((r) => r.body);
      await apiOnly.runtime.store.end(id, 'cancelled');
      await waitFor(async () => deliveriesFor(id).length === 1, 10_000);
      expect(JSON.parse(deliveriesFor(id)[0]!.body).type).toBe('job.cancelled');
    } finally {
      await apiOnly.close();
    }
  });
});

describe('webhook targets (SSRF guard)', () => {
  let mock: MockServer;
  let guarded: TestBroker;
  let unsigned: TestBroker;

  beforeAll(async () => {
    mock = await startMock();
    guarded = await startBroker(configFor({ p: mock }, { webhooks: { secret: SECRET, allowlist: ['10.9.8.0/24'] } }), { workers: undefined });
    unsigned = await startBroker(configFor({ p: mock }), { workers: undefined });
  });
  afterAll(async () => {
    await guarded.close();
    await unsigned.close();
    await mock.app.close();
    await Promise.all([dropPrefix(guarded.prefix), dropPrefix(unsigned.prefix)]);
  });

  it.each([
    ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254/],
    ['http://127.0.0.1:9/x', /127\.0\.0\.1/],
    ['http://localhost:8080/x', /resolves to/],
    ['http://10.0.0.5/x', /10\.0\.0\.5/],
    ['http://[::1]/x', /::1/],
    ['http://[fd00:ec2::254]/x', /fd00:ec2::254/],
    ['http://[::ffff:127.0.0.1]/x', /127\.0\.0\.1|::ffff/],
    ['http://[::127.0.0.1]/x', /::7f00:1|::127/],
    ['http://[::ffff:0:127.0.0.1]/x', /::ffff:0:7f00:1|::ffff/],
    ['http://[2002:7f00:1::]/x', /2002:7f00:1::/],
    ['http://user:pw@example.com/x', /credentials/],
  ])('refuses %s at intake with a 400 naming webhook_url', async (url, message) => {
    const res = await guarded.call('POST', '/v1/jobs', { request: chat(), webhook_url: url });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: 'webhook_url', code: 'webhook_target_refused' });
    expect(res.body.error.message).toMatch(message);
  });

  it('allows a private range the allowlist names', async () => {
    const res = await guarded.call('POST', '/v1/jobs', { request: chat(), webhook_url: 'http://10.9.8.7/hooks' });
    expect(res.status).toBe(202);
  });

  it('refuses webhooks when no secret is configured to sign them', async () => {
    const res = await unsigned.call('POST', '/v1/jobs', { request: chat(), webhook_url: 'https://example.com/hooks' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('webhooks_disabled');
  });

  it('checks inside the socket lookup, so the address dialled is the one checked', async () => {
    const policy = new TargetPolicy({ allowPrivate: false });
    const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => policy.lookup('localhost', {}, (e) => resolve(e)));
    expect(err?.code).toBe('EREFUSEDTARGET');
    const open = new TargetPolicy({ allowPrivate: true });
    const ok = await new Promise<string>((resolve) => open.lookup('localhost', {}, (_e, address) => resolve(String(address))));
    expect(['127.0.0.1', '::1']).toContain(ok);
  });
});
