import { randomBytes } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { Receiver } from './support/receiver.js';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

const API_KEY = 'sy-batch-tenant-key-0123456789';

/** The official openai SDK, unchanged, drives Switchyard's OpenAI-shaped files and batches API. */
describe('OpenAI Batch API shape', () => {
  let good: MockServer;
  let bad: MockServer;
  let broker: TestBroker;
  let client: OpenAI;
  let receiver: Receiver;

  beforeAll(async () => {
    good = await startMock();
    bad = await startMock({ errorRate: 1, errorStatus: 400 });
    receiver = await new Receiver().start();
    broker = await startBroker(
      configFor(
        { p: good, broken: bad },
        {
          models: { fast: ['p/model-a'] },
          auth: { api_keys: [{ name: 'batcher', key: API_KEY, webhook_url: receiver.url }] },
          webhooks: { secret: SECRET, allow_private_targets: true },
        },
      ),
    );
    client = new OpenAI({ apiKey: API_KEY, baseURL: `${broker.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await broker.close();
    await receiver.stop();
    await Promise.all([good.app.close(), bad.app.close()]);
    await dropPrefix(broker.prefix);
  });

  const line = (i: number, model = 'fast', extra: Record<string, unknown> = {}) =>
    JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model, ...chat(`line ${i}`), max_tokens: 50 }, ...extra });
  const upload = async (lines: string[]) => client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'input.jsonl'), purpose: 'batch' });
  const settle = async (id: string, until: string[] = ['completed', 'failed', 'cancelled', 'expired']) => {
    let batch = await client.batches.retrieve(id);
    await waitFor(async () => until.includes((batch = await client.batches.retrieve(id)).status), 30_000, 100);
    return batch;
  };

  it('files.create → batches.create → batches.retrieve → files.content, with a failing line in the error file', async () => {
    const lines = Array.from({ length: 20 }, (_, i) => line(i));
    lines[7] = line(7, 'broken/some-model');
    const file = await upload(lines);
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'input.jsonl' });
    expect(file.bytes).toBeGreaterThan(0);
    expect((await client.files.retrieve(file.id)).id).toBe(file.id);

    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'sdk-test' } });
    expect(created).toMatchObject({ object: 'batch', status: 'validating', input_file_id: file.id, metadata: { run: 'sdk-test' } });

    const batch = await settle(created.id);
    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total: 20, completed: 19, failed: 1 });
    expect(batch.in_progress_at).not.toBeNull();
    expect(batch.finalizing_at).not.toBeNull();
    expect(batch.completed_at).not.toBeNull();

    const output = (await (await client.files.content(batch.output_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(output).toHaveLength(19);
    for (const o of output) {
      expect(o).toMatchObject({ response: { status_code: 200, body: { object: 'chat.completion' } }, error: null });
      expect(o.response.body.choices[0].message.content).toContain(`line ${o.custom_id.slice(4)}`);
      expect(o.id).toMatch(/^batch_req_/);
    }
    expect(new Set(output.map((o) => o.custom_id)).size).toBe(19);

    const errors = (await (await client.files.content(batch.error_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ custom_id: 'req-7', response: { status_code: 400 }, error: { code: 'invalid_request' } });

    // The tenant's webhook hears batch.completed, signed like every Switchyard event.
    await waitFor(async () => receiver.received.some((r) => JSON.parse(r.body).data.id === batch.id));
    const event = receiver.received.find((r) => JSON.parse(r.body).data.id === batch.id)!;
    const verified = new Webhook(SECRET).verify(event.body, event.headers as Record<string, string>) as { type: string; data: { status: string; request_counts: unknown } };
    expect(verified).toMatchObject({ type: 'batch.completed', data: { status: 'completed', request_counts: { total: 20, completed: 19, failed: 1 } } });
    // And the batch itself says where its event went and how that went, as a job does.
    const shown = await waitFor(async () => {
      const b = (await broker.call('GET', `/v1/batches/${batch.id}`, undefined, { authorization: `Bearer ${API_KEY}` })).body;
      return b.webhook?.status === 'delivered' ? b : null;
    });
    expect(shown.webhook).toMatchObject({ url: receiver.url, status: 'delivered', attempts: [{ attempt: 1, status_code: 200 }] });
  });

  it('refuses a batch whose lines are invalid, naming each line, and runs none of them', async () => {
    const calls = good.stats.calls;
    const file = await upload([line(1), line(1), line(2, 'fast', { url: '/v1/embeddings' }), '{not json', line(3, 'nobody/model'), line(4, 'fast', { method: 'GET' })]);
    const batch = await settle((await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
    expect(batch.status).toBe('failed');
    expect(batch.failed_at).not.toBeNull();
    const errors = batch.errors!.data!.map((e) => [e.line, e.code]);
    expect(errors).toEqual([
      [2, 'duplicate_custom_id'],
      [3, 'invalid_request'],
      [4, 'invalid_json'],
      [5, 'invalid_request'],
      [6, 'invalid_request'],
    ]);
    expect(good.stats.calls).toBe(calls);
    await waitFor(async () => receiver.received.some((r) => JSON.parse(r.body).data.id === batch.id));
    expect(JSON.parse(receiver.received.find((r) => JSON.parse(r.body).data.id === batch.id)!.body).type).toBe('batch.failed');
  });

  it('cancels a running batch: cancelling, then cancelled, with what finished in the output', async () => {
    // Long enough that no line can finish before the cancel, on a loaded machine too (the cancel
    // stops the calls in flight, so the test does not wait for them).
    good.behaviour.latencyMs = 4000;
    try {
      const file = await upload(Array.from({ length: 40 }, (_, i) => line(i)));
      const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      await settle(created.id, ['in_progress']);
      // In progress can be seen before the batch has made a job: cancel once its calls are running.
      await waitFor(async () => good.stats.in_flight > 0);
      const cancelling = await client.batches.cancel(created.id);
      expect(['cancelling', 'cancelled']).toContain(cancelling.status);
      const batch = await settle(created.id, ['cancelled']);
      expect(batch.cancelled_at).not.toBeNull();
      expect(batch.request_counts!.completed + batch.request_counts!.failed).toBe(batch.request_counts!.total);
      expect(batch.request_counts!.failed).toBeGreaterThan(0);
      const errors = (await (await client.files.content(batch.error_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
      expect(errors.some((e) => e.error.code === 'batch_cancelled')).toBe(true);
      await waitFor(async () => receiver.received.some((r) => JSON.parse(r.body).data.id === batch.id));
      expect(JSON.parse(receiver.received.find((r) => JSON.parse(r.body).data.id === batch.id)!.body).type).toBe('batch.cancelled');
    } finally {
      good.behaviour.latencyMs = 0;
    }
  });

  it('cancels a batch while it is still validating: the cancel wins, nothing runs, batch.cancelled is sent', async () => {
    const file = await upload(Array.from({ length: 20_000 }, (_, i) => line(i)));
    const callsBefore = good.stats.calls;
    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(created.status).toBe('validating');
    expect((await client.batches.cancel(created.id)).status).toBe('cancelling');
    const batch = await settle(created.id);
    expect(batch.status).toBe('cancelled');
    expect(batch.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
    expect(batch.output_file_id).toBeNull();
    await new Promise((r) => setTimeout(r, 500));
    expect(good.stats.calls).toBe(callsBefore);
    await waitFor(async () => receiver.received.some((r) => JSON.parse(r.body).data.id === batch.id));
    expect(receiver.received.filter((r) => JSON.parse(r.body).data.id === batch.id).map((r) => JSON.parse(r.body).type)).toEqual(['batch.cancelled']);
    // Cancelling it again is no error; a finished batch is.
    expect((await client.batches.cancel(created.id)).status).toBe('cancelled');
  });

  it('expires a batch that outlives its completion window: finished lines in the output, the rest batch_expired', async () => {
    const slow = await startMock({ latencyMs: 150 });
    const short = await startBroker(
      configFor({ p: slow }, { models: { fast: ['p/model-a'] }, auth: { api_keys: [{ name: 'batcher', key: API_KEY }] }, batches: { completion_window_ms: 1500 } }),
    );
    try {
      short.config.providers.p!.max_in_flight = 2;
      const shortClient = new OpenAI({ apiKey: API_KEY, baseURL: `${short.url}/v1`, maxRetries: 0 });
      const file = await shortClient.files.create({ file: await toFile(Buffer.from(`${Array.from({ length: 40 }, (_, i) => line(i)).join('\n')}\n`), 'in.jsonl'), purpose: 'batch' });
      const created = await shortClient.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      let batch = await shortClient.batches.retrieve(created.id);
      await waitFor(async () => (batch = await shortClient.batches.retrieve(created.id)).status === 'expired', 30_000, 100);
      expect(batch.expired_at).not.toBeNull();
      expect(batch.request_counts!.completed).toBeGreaterThan(0);
      expect(batch.request_counts!.failed).toBeGreaterThan(0);
      const errors = (await (await shortClient.files.content(batch.error_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
      expect(errors.every((e) => e.error.code === 'batch_expired')).toBe(true);
      expect(errors).toHaveLength(batch.request_counts!.failed);
    } finally {
      await short.close();
      await slow.app.close();
      await dropPrefix(short.prefix);
    }
  });

  it('lists batches newest first with after / limit / has_more, and answers JSON as JSON', async () => {
    const page = await client.batches.list({ limit: 2 });
    expect(page.data).toHaveLength(2);
    expect(page.has_more).toBe(true);
    const next = await client.batches.list({ limit: 2, after: page.data[1]!.id });
    expect(next.data[0]!.id).not.toBe(page.data[1]!.id);
    const raw = await fetch(`${broker.url}/v1/batches?limit=1`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(raw.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('rejects a wrong purpose, an unknown file and an unsupported endpoint with 400s', async () => {
    await expect(client.files.create({ file: await toFile(Buffer.from('{}\n'), 'x.jsonl'), purpose: 'fine-tune' })).rejects.toMatchObject({ status: 400 });
    await expect(client.batches.create({ input_file_id: 'file-nope', endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400 });
    const file = await upload([line(1)]);
    await expect(client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' })).rejects.toMatchObject({ status: 400 });
    await expect(client.batches.retrieve('batch_nope')).rejects.toMatchObject({ status: 404 });
  });
});
