import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { createTestHost, type NetnsDelivery, type NetnsReceiver, startReceiver, type TestHost } from './support/netns.js';
import { Receiver } from './support/receiver.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const API_KEY = `sy-netns-tenant-${randomBytes(8).toString('hex')}`;
const auth = { authorization: `Bearer ${API_KEY}` };

type Event = { id: string; type: string; data: { id: string; status: string } };
const verify = (d: NetnsDelivery) => new Webhook(SECRET).verify(d.body, d.headers) as Event;
const typeOf = (d: NetnsDelivery) => (JSON.parse(d.body) as Event).type;
const subjectOf = (d: NetnsDelivery) => (JSON.parse(d.body) as Event).data.id;

/**
 * The SSRF guard in its default config (nothing allowlisted, private targets refused) must still
 * deliver to a public address. The receiver runs in a network namespace on an address in 11.0.0.0/8,
 * reached over a veth pair, so the broker's delivery is a real connection to a non-private address.
 */
describe('webhooks to a receiver on a public address, default guard', () => {
  let host: TestHost;
  let receiver: NetnsReceiver;
  let loopback: Receiver;
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    host = await createTestHost();
    receiver = await startReceiver(host);
    loopback = await new Receiver().start();
    mock = await startMock();
    broker = await startBroker(configFor({ p: mock }, { webhooks: { secret: SECRET }, auth: { api_keys: [{ name: 'netns', key: API_KEY, webhook_url: receiver.url }] } }));
    expect(broker.config.webhooks.allow_private_targets).toBe(false);
    expect(broker.config.webhooks.allowlist).toEqual([]);
  });
  afterAll(async () => {
    await broker?.close();
    await mock?.app.close();
    await loopback?.stop();
    await host?.close();
    if (broker) await dropPrefix(broker.prefix);
  });

  it('delivers a signed job.succeeded to the namespace and marks the webhook delivered', async () => {
    const res = await broker.call('POST', '/v1/jobs', { request: chat('to a public address'), webhook_url: receiver.url }, auth);
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    const d = await receiver.waitFor((r) => subjectOf(r) === id);
    expect(d).toMatchObject({ method: 'POST', url: '/hooks' });
    expect(verify(d)).toMatchObject({ type: 'job.succeeded', data: { id, status: 'succeeded' } });
    await waitFor(async () => (await broker.call('GET', `/v1/jobs/${id}`, undefined, auth)).body.webhook?.status === 'delivered');
    const view = (await broker.call('GET', `/v1/jobs/${id}`, undefined, auth)).body;
    expect(view.webhook).toMatchObject({ url: receiver.url, status: 'delivered', attempts: [{ attempt: 1, status_code: 200 }] });
  });

  it("delivers a signed batch.completed to the tenant's webhook_url in the namespace", async () => {
    const line = (id: string) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', messages: [{ role: 'user', content: id }] } });
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([`${line('a')}\n${line('b')}\n`], { type: 'application/jsonl' }), 'input.jsonl');
    const upload = await fetch(`${broker.url}/v1/files`, { method: 'POST', headers: auth, body: form });
    expect(upload.status).toBe(200);
    const file = (await upload.json()) as { id: string };

    const created = await broker.call('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }, auth);
    expect(created.status).toBe(200);
    const batchId = created.body.id as string;

    const d = await receiver.waitFor((r) => subjectOf(r) === batchId, 30_000);
    expect(typeOf(d)).toBe('batch.completed');
    expect(verify(d)).toMatchObject({ type: 'batch.completed', data: { id: batchId, status: 'completed' } });
  });

  it('still refuses a loopback receiver at intake', async () => {
    const res = await broker.call('POST', '/v1/jobs', { request: chat(), webhook_url: loopback.url }, auth);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: 'webhook_url', code: 'webhook_target_refused' });
    expect(res.body.error.message).toMatch(/127\.0\.0\.1/);
    expect(loopback.received).toEqual([]);
  });
});

describe('batch webhooks in the configuration, default guard', () => {
  it('refuses at start-up a batch webhook the guard would refuse, naming where it is configured', async () => {
    const mock = await startMock();
    try {
      const secret = `whsec_${randomBytes(32).toString('base64')}`;
      const config = configFor({ p: mock }, { webhooks: { secret }, auth: { api_keys: [{ name: 't', key: 'sy-batch-hook-key-0123456789', webhook_url: 'http://169.254.169.254/latest' }] } });
      await expect(startBroker(config)).rejects.toThrow(/config error at auth\.api_keys\.0\.webhook_url: webhook refused: 169\.254\.169\.254 is link-local/);
      await dropPrefix(config.redis.prefix);
    } finally {
      await mock.app.close();
    }
  });
});
