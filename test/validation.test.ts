import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

/** Every bad field gets a 400 that names it, and nothing is enqueued. */
describe('intake validation', () => {
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    mock = await startMock();
    broker = await startBroker(configFor({ primary: mock }, { server: { body_limit_bytes: 64 * 1024 } }), { workers: undefined });
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  const valid = { task: 'default', request: chat() };
  const cases: [string, Record<string, unknown>, string | null, RegExp][] = [
    ['missing request', { task: 'default' }, 'request', /request/],
    ['request not an object', { request: 'hi' }, 'request', /object/],
    ['messages missing', { request: {} }, 'request.messages', /messages/],
    ['messages empty', { request: { messages: [] } }, 'request.messages', /at least one message/],
    ['bad role', { request: { messages: [{ role: 'robot', content: 'x' }] } }, 'request.messages[0].role', /role/],
    ['content wrong type', { request: { messages: [{ role: 'user', content: 42 }] } }, 'request.messages[0].content', /content/],
    ['model inside request', { request: { ...chat(), model: 'gpt-4o' } }, 'request.model', /model on the job/],
    ['stream true', { request: { ...chat(), stream: true } }, 'request.stream', /does not stream.*POST \/v1\/chat\/completions/],
    ['temperature out of range', { request: { ...chat(), temperature: 3 } }, 'request.temperature', /temperature/],
    ['max_tokens not positive', { request: { ...chat(), max_tokens: 0 } }, 'request.max_tokens', /max_tokens/],
    ['response_format unknown type', { request: { ...chat(), response_format: { type: 'yaml' } } }, 'request.response_format.type', /type/],
    ['priority too low', { ...valid, priority: 0 }, 'priority', /priority/],
    ['priority too high', { ...valid, priority: 11 }, 'priority', /priority/],
    ['priority not an integer', { ...valid, priority: 2.5 }, 'priority', /priority/],
    ['priority a string', { ...valid, priority: '5' }, 'priority', /priority/],
    ['task empty', { ...valid, task: '' }, 'task', /task/],
    ['task not a string', { ...valid, task: 7 }, 'task', /task/],
    ['unknown task', { ...valid, task: 'nope' }, 'task', /unknown task "nope"/],
    ['unknown model alias', { ...valid, model: 'huge' }, 'model', /unknown model "huge"/],
    ['unknown provider in model', { ...valid, model: 'nobody/gpt' }, 'model', /unknown provider "nobody"/],
    ['a task named like an Object property', { ...valid, task: 'constructor' }, 'task', /unknown task "constructor"/],
    ['a model named like an Object property', { ...valid, model: '__proto__' }, 'model', /unknown model "__proto__"/],
    ['a provider named like an Object property', { ...valid, model: 'toString/x' }, 'model', /unknown provider "toString"/],
    ['metadata value not a string', { ...valid, metadata: { a: 1 } }, 'metadata.a', /metadata/],
    ['metadata too many pairs', { ...valid, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata', /at most 16/],
    ['deadline_s zero', { ...valid, deadline_s: 0 }, 'deadline_s', /deadline_s/],
    ['deadline_s not an integer', { ...valid, deadline_s: 1.5 }, 'deadline_s', /deadline_s/],
    ['webhook_url not a URL', { ...valid, webhook_url: 'not a url' }, 'webhook_url', /webhook_url/],
    ['webhook_url not http', { ...valid, webhook_url: 'ftp://example.com/x' }, 'webhook_url', /webhook_url/],
    ['unknown top-level field', { ...valid, priorty: 1 }, 'priorty', /priorty/],
  ];

  it.each(cases)('%s → 400 naming the field', async (_name, body, param, message) => {
    const res = await broker.call('POST', '/v1/jobs', body);
    expect(res.status).toBe(400);
    expect(res.body.error.type).toBe('invalid_request_error');
    expect(res.body.error.param).toBe(param);
    expect(res.body.error.message).toMatch(message);
  });

  it('refuses a request nested deeper than any prompt needs with a 400, not a crash', async () => {
    // Sent as text: building it as an object would overflow the test's own JSON.stringify.
    const body = `{"request":{"messages":[{"role":"user","content":"hi"}],"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`;
    const res = await broker.call('POST', '/v1/jobs', body);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param: 'request' });
    expect(res.body.error.message).toMatch(/nested more than 64 levels/);
  });

  it('enqueued nothing for any of the bad bodies', async () => {
    const counts = await broker.runtime.queues.get('primary').getJobCounts();
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
    const list = await broker.call('GET', '/v1/jobs');
    expect(list.body.data).toEqual([]);
  });

  it('answers malformed JSON with 400, a wrong content type with 415 and an oversized body with 413', async () => {
    const bad = await broker.call('POST', '/v1/jobs', '{"request": ');
    expect(bad.status).toBe(400);
    expect(bad.body.error.type).toBe('invalid_request_error');
    const text = await fetch(`${broker.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(415);
    expect(((await text.json()) as any).error.type).toBe('invalid_request_error');
    const huge = await broker.call('POST', '/v1/jobs', { request: chat('x'.repeat(100 * 1024)) });
    expect(huge.status).toBe(413);
    expect(huge.body.error.type).toBe('request_too_large');
  });

  it('rejects a bad wait and a bad list query with 400 naming the parameter', async () => {
    const wait = await broker.call('GET', '/v1/jobs/job_x?wait=61');
    expect(wait.status).toBe(400);
    expect(wait.body.error.param).toBe('wait');
    const limit = await broker.call('GET', '/v1/jobs?limit=0');
    expect(limit.status).toBe(400);
    expect(limit.body.error.param).toBe('limit');
    const status = await broker.call('GET', '/v1/jobs?status=done');
    expect(status.status).toBe(400);
    expect(status.body.error.param).toBe('status');
  });
});
