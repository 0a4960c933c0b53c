import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flatLogger, loggerOptions } from '../src/log.js';
import { captureLogs, chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, testRedis, waitFor } from './support/broker.js';

const API_KEY = 'sy-key-tenant-a-0123456789abcdef';
const OTHER_KEY = 'sy-key-tenant-b-0123456789abcdef';
const SECRET_VALUE = 'sk-never-in-a-log-0123456789';

describe('auth, logs and secrets', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let providerKey: string;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 5 });
    const config = configFor({ primary: mock }, { auth: { api_keys: [{ name: 'tenant-a', key: API_KEY }, { name: 'tenant-b', key: OTHER_KEY }] } });
    providerKey = config.providers.primary!.api_key!;
    mock.behaviour.apiKey = providerKey;
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('writes one structured line per attempt', async () => {
    const auth = { authorization: `Bearer ${API_KEY}` };
    const { body } = await broker.call('POST', '/v1/jobs', { request: chat() }, auth);
    const job = (await broker.call('GET', `/v1/jobs/${body.id}?wait=20`, undefined, auth)).body;
    expect(job.status).toBe('succeeded');
    // The worker writes the line once its settle returns, which may be just after the poll answered.
    await waitFor(async () => broker.logs.lines.some((l) => l.msg === 'attempt' && l.job === body.id));
    const lines = broker.logs.lines.filter((l) => l.msg === 'attempt' && l.job === body.id);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ job: body.id, provider: 'primary', model: 'model-a', hop: 0, outcome: 'succeeded', tokens: job.usage.total_tokens });
    expect(typeof lines[0]!.latency_ms).toBe('number');
    // Written past redaction (flatLogger), it still carries what every line of the process does.
    expect(lines[0]).toMatchObject({ level: 30, pid: process.pid });
  });

  it('writes a line of plain values past redaction as it is, beside a redacted line of the same logger', () => {
    const written: Record<string, unknown>[] = [];
    const log = pino({ ...loggerOptions(), name: 'worker' }, { write: (line: string) => written.push(JSON.parse(line)) }).child({ provider: 'p' });
    flatLogger(log).info({ job: 'job_x', key: 'plain', secret: 'shown: a plain value names no field inside an object', hop: 0, rerun: true }, 'attempt');
    log.info({ job: 'job_x', config: { api_key: SECRET_VALUE } }, 'other');
    expect(written[0]).toMatchObject({ name: 'worker', provider: 'p', pid: process.pid, job: 'job_x', key: 'plain', hop: 0, rerun: true, msg: 'attempt' });
    expect(written[1]!.config).toEqual({ api_key: '[redacted]' });
    // Never called: `tsc` checks that a flat line refuses an object, which could hold a field a redact path names.
    // @ts-expect-error: an object is not a plain value
    const refused = () => flatLogger(log).info({ job: 'job_x', config: { api_key: SECRET_VALUE } }, 'attempt');
    void refused;
  });

  it('asks for the API key on every /v1 route and refuses a wrong one', async () => {
    for (const [method, path] of [['POST', '/v1/jobs'], ['GET', '/v1/jobs'], ['GET', '/v1/jobs/job_x'], ['POST', '/v1/jobs/job_x/cancel']] as const) {
      const missing = await broker.call(method, path, method === 'POST' ? { request: chat() } : undefined);
      expect(missing.status, `${method} ${path}`).toBe(401);
      expect(missing.body.error.type).toBe('authentication_error');
      const wrong = await broker.call(method, path, method === 'POST' ? { request: chat() } : undefined, { authorization: 'Bearer sy-key-wrong-000000000000000' });
      expect(wrong.status).toBe(401);
    }
    expect((await broker.call('GET', '/healthz')).status).toBe(200);
  });

  it('shows a tenant only its own jobs', async () => {
    const a = { authorization: `Bearer ${API_KEY}` };
    const b = { authorization: `Bearer ${OTHER_KEY}` };
    const { body } = await broker.call('POST', '/v1/jobs', { request: chat() }, a);
    expect((await broker.call('GET', `/v1/jobs/${body.id}`, undefined, a)).status).toBe(200);
    const other = await broker.call('GET', `/v1/jobs/${body.id}`, undefined, b);
    expect(other.status).toBe(404);
    expect((await broker.call('POST', `/v1/jobs/${body.id}/cancel`, undefined, b)).status).toBe(404);
    const listB = await broker.call('GET', '/v1/jobs', undefined, b);
    expect(listB.body.data.map((j: { id: string }) => j.id)).not.toContain(body.id);
    const listA = await broker.call('GET', '/v1/jobs', undefined, a);
    expect(listA.body.data.map((j: { id: string }) => j.id)).toContain(body.id);
  });

  it('keeps the provider key and the API key out of logs, job records and queue data', async () => {
    const raw = broker.logs.raw.join('\n');
    expect(raw).not.toContain(providerKey);
    expect(raw).not.toContain(API_KEY);
    const redis = testRedis();
    try {
      const keys = await redis.keys(`${broker.prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        const type = await redis.type(key);
        const dump = type === 'hash' ? JSON.stringify(await redis.hgetall(key)) : type === 'string' ? String(await redis.get(key)) : type === 'zset' ? JSON.stringify(await redis.zrange(key, '0', '-1')) : type === 'list' ? JSON.stringify(await redis.lrange(key, 0, -1)) : '';
        expect(dump, key).not.toContain(providerKey);
        expect(dump, key).not.toContain(API_KEY);
        expect(dump, key).not.toContain(OTHER_KEY);
        expect(key).not.toContain(API_KEY);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('redacts authorization headers and key fields from anything logged', () => {
    const { log, raw } = captureLogs();
    log.info({ req: { headers: { authorization: 'Bearer top-secret-1' } }, provider: { api_key: 'top-secret-2' }, config: { providers: { openai: { api_key: 'top-secret-3' } } } }, 'x');
    expect(raw.join()).not.toMatch(/top-secret/);
    expect(raw.join()).toContain('[redacted]');
  });
});
