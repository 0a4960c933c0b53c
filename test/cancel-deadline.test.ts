import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { hopJobId } from '../src/queues/provider-queues.js';

describe('cancel and deadlines', () => {
  let mock: MockServer;
  let api: TestBroker;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 600 });
    api = await startBroker(configFor({ primary: mock }), { workers: undefined });
  });
  afterAll(async () => {
    await api.close();
    await mock.app.close();
    await dropPrefix(api.prefix);
  });

  const workers = async () => startBroker(api.config, { api: false, workers: [] });

  it('cancels a queued job: it leaves the queue and never reaches the provider', async () => {
    const { body } = await api.call('POST', '/v1/jobs', { request: chat('cancel me') });
    const res = await api.call('POST', `/v1/jobs/${body.id}/cancel`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: body.id, status: 'cancelled', error: { type: 'cancelled' } });
    expect(res.body.finished_at).not.toBeNull();
    expect(await api.runtime.queues.get('primary').getJob(`${hopJobId(body.id, 0)}`)).toBeUndefined();
    // Cancelling again changes nothing, and says so.
    const again = await api.call('POST', `/v1/jobs/${body.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('job_not_cancellable');
    const w = await workers();
    const other = await api.call('POST', '/v1/jobs', { request: chat('runs') });
    await api.call('GET', `/v1/jobs/${other.body.id}?wait=20`);
    await w.close();
    expect(mock.stats.recent).not.toContain('cancel me');
    expect((await api.call('GET', `/v1/jobs/${body.id}`)).body.status).toBe('cancelled');
  });

  it('cancels a running job: its call is stopped, recorded, and the job stays cancelled', async () => {
    const w = await workers();
    try {
      const { body } = await api.call('POST', '/v1/jobs', { request: chat('running then cancelled') });
      await waitFor(async () => (await api.call('GET', `/v1/jobs/${body.id}`)).body.status === 'running');
      const res = await api.call('POST', `/v1/jobs/${body.id}/cancel`);
      expect(res.body.status).toBe('cancelled');
      await waitFor(async () => w.logs.lines.some((l) => l.job === body.id && l.msg === 'attempt'));
      const after = await api.call('GET', `/v1/jobs/${body.id}`);
      expect(after.body.status).toBe('cancelled');
      expect(after.body.result).toBeNull();
      const line = w.logs.lines.find((l) => l.job === body.id && l.msg === 'attempt')!;
      expect(line.outcome).toBe('cancelled');
      expect(after.body.attempts).toEqual([expect.objectContaining({ outcome: 'cancelled' })]);
    } finally {
      await w.close();
    }
  });

  it('refuses to cancel a finished job with 409, and an unknown one with 404', async () => {
    const w = await workers();
    try {
      const { body } = await api.call('POST', '/v1/jobs', { request: chat() });
      expect((await api.call('GET', `/v1/jobs/${body.id}?wait=20`)).body.status).toBe('succeeded');
      const res = await api.call('POST', `/v1/jobs/${body.id}/cancel`);
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ type: 'conflict_error', code: 'job_not_cancellable' });
      expect((await api.call('POST', '/v1/jobs/job_nope/cancel')).status).toBe(404);
    } finally {
      await w.close();
    }
  });

  it('expires a job whose deadline passed before it could start, without calling the provider', async () => {
    const { body } = await api.call('POST', '/v1/jobs', { deadline_s: 1, request: chat('too late') });
    expect(body.expires_at).toBe(body.created_at + 1);
    await new Promise((r) => setTimeout(r, 1200));
    const w = await workers();
    try {
      const res = await api.call('GET', `/v1/jobs/${body.id}?wait=20`);
      expect(res.body.status).toBe('expired');
      expect(res.body.error.type).toBe('deadline_exceeded');
      expect(res.body.attempts).toEqual([]);
      expect(mock.stats.recent).not.toContain('too late');
    } finally {
      await w.close();
    }
  });
});
