import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';
import { hopJobId } from '../src/queues/provider-queues.js';

describe('Idempotency-Key', () => {
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    mock = await startMock();
    broker = await startBroker(configFor({ primary: mock }));
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('returns the first job (200) for the same key and body, and runs it once', async () => {
    const body = { task: 'default', priority: 4, request: chat('once only') };
    const first = await broker.call('POST', '/v1/jobs', body, { 'idempotency-key': 'order-42' });
    expect(first.status).toBe(202);
    // Same body with its keys in another order is still the same body.
    const again = await broker.call('POST', '/v1/jobs', { request: chat('once only'), priority: 4, task: 'default' }, { 'idempotency-key': 'order-42' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get('location')).toBe(`/v1/jobs/${first.body.id}`);
    const done = await broker.call('GET', `/v1/jobs/${first.body.id}?wait=20`);
    expect(done.body.status).toBe('succeeded');
    const third = await broker.call('POST', '/v1/jobs', body, { 'idempotency-key': 'order-42' });
    expect(third.status).toBe(200);
    expect(third.body.status).toBe('succeeded');
    expect(mock.stats.calls).toBe(1);
  });

  it('answers 422 for the same key with a different body', async () => {
    const first = await broker.call('POST', '/v1/jobs', { request: chat('a') }, { 'idempotency-key': 'k-conflict' });
    expect(first.status).toBe(202);
    const other = await broker.call('POST', '/v1/jobs', { request: chat('b') }, { 'idempotency-key': 'k-conflict' });
    expect(other.status).toBe(422);
    expect(other.body.error).toMatchObject({ type: 'idempotency_error', code: 'idempotency_key_reused' });
  });

  it('creates separate jobs for different keys and for no key', async () => {
    const body = { request: chat('same') };
    const a = await broker.call('POST', '/v1/jobs', body, { 'idempotency-key': 'k-a' });
    const b = await broker.call('POST', '/v1/jobs', body, { 'idempotency-key': 'k-b' });
    const c = await broker.call('POST', '/v1/jobs', body);
    const d = await broker.call('POST', '/v1/jobs', body);
    expect(new Set([a.body.id, b.body.id, c.body.id, d.body.id]).size).toBe(4);
    expect([a.status, b.status, c.status, d.status]).toEqual([202, 202, 202, 202]);
  });

  it('gives exactly one job to concurrent requests racing with one key', async () => {
    const body = { request: chat('race') };
    const replies = await Promise.all(Array.from({ length: 20 }, () => broker.call('POST', '/v1/jobs', body, { 'idempotency-key': 'k-race' })));
    expect(new Set(replies.map((r) => r.body.id)).size).toBe(1);
    expect(replies.filter((r) => r.status === 202)).toHaveLength(1);
    expect(replies.filter((r) => r.status === 200)).toHaveLength(19);
  });

  it('re-enqueues a replayed job whose first request died before enqueueing', async () => {
    const apiOnly = await startBroker(configFor({ primary: mock }), { workers: undefined });
    try {
      // The crash window: the record exists, its hop-0 BullMQ job does not.
      const first = await apiOnly.call('POST', '/v1/jobs', { request: chat('lost hop') }, { 'idempotency-key': 'k-crash' });
      const queue = apiOnly.runtime.queues.get('primary');
      const removed = await queue.remove(`${hopJobId(first.body.id, 0)}`);
      expect(removed).toBe(1);
      expect(await queue.getJob(`${hopJobId(first.body.id, 0)}`)).toBeUndefined();
      const replay = await apiOnly.call('POST', '/v1/jobs', { request: chat('lost hop') }, { 'idempotency-key': 'k-crash' });
      expect(replay.status).toBe(200);
      expect(replay.body.id).toBe(first.body.id);
      expect(await queue.getJob(`${hopJobId(first.body.id, 0)}`)).toBeTruthy();
    } finally {
      await apiOnly.close();
      await dropPrefix(apiOnly.prefix);
    }
  });
});
