import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { classifyStatus, parseRetryAfter } from '../src/providers/errors.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

describe('the error taxonomy (DESIGN section 4)', () => {
  const rows: [number, { message?: string; code?: string }, string, boolean, boolean][] = [
    [429, {}, 'rate_limited', true, false],
    [500, {}, 'provider_unavailable', true, true],
    [502, {}, 'provider_unavailable', true, true],
    [503, {}, 'provider_unavailable', true, true],
    [504, {}, 'provider_unavailable', true, true],
    [529, { message: 'Overloaded' }, 'provider_unavailable', true, true],
    [408, {}, 'timeout', true, true],
    [401, {}, 'provider_auth', true, true],
    [403, {}, 'provider_auth', true, true],
    [404, { message: 'The model `x` does not exist' }, 'model_not_found', true, false],
    [400, { code: 'model_not_found' }, 'model_not_found', true, false],
    [400, { code: 'context_length_exceeded', message: 'too long' }, 'context_length_exceeded', true, false],
    [400, { message: "This model's maximum context length is 8192 tokens" }, 'context_length_exceeded', true, false],
    [400, { message: 'prompt is too long: 210000 tokens > 200000 maximum' }, 'context_length_exceeded', true, false],
    [400, { message: "'messages' must be a non-empty array" }, 'invalid_request', false, false],
    [422, { message: 'unprocessable' }, 'invalid_request', false, false],
  ];
  it.each(rows)('%i %j → %s (retryable %s, breaker failure %s)', (status, detail, type, retryable, breakerFailure) => {
    expect(classifyStatus(status, detail)).toMatchObject({ type, retryable, breakerFailure, status });
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0.5')).toBe(500);
    const now = Date.parse('2026-11-25T12:00:00Z');
    expect(parseRetryAfter('Wed, 25 Nov 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(classifyStatus(429, {}, '3').retryAfterMs).toBe(3000);
  });
});

describe('faults on the wire, through the real client', () => {
  let primary: MockServer;
  let secondary: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    primary = await startMock();
    secondary = await startMock();
    broker = await startBroker(
      configFor({ primary, secondary }, { models: { chain: ['primary/p', 'secondary/s'] }, tasks: { default: 'chain' }, breaker: { failure_threshold: 1000 } }),
    );
  });
  beforeEach(async () => {
    for (const m of [primary, secondary]) await fetch(`${m.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await broker.close();
    await Promise.all([primary.app.close(), secondary.app.close()]);
    await dropPrefix(broker.prefix);
  });

  const run = async (body: Record<string, unknown> = {}) => {
    const { body: job } = await broker.call('POST', '/v1/jobs', { request: chat(), ...body });
    return (await broker.call('GET', `/v1/jobs/${job.id}?wait=30`)).body;
  };

  it.each([
    ['a 200 whose body is not JSON', { garbageRate: 1 }, 'bad_response', /not JSON/],
    ['a body cut off before its length', { truncateRate: 1 }, 'bad_response', /cut off/],
    ['a connection reset without an answer', { resetRate: 1 }, 'connection_error', /./],
  ])('%s is retryable: the job falls back', async (_name, behaviour, type, message) => {
    Object.assign(primary.behaviour, behaviour);
    const job = await run();
    expect(job.status).toBe('succeeded');
    expect(job.attempts[0]).toMatchObject({ provider: 'primary', outcome: 'fallback', error: { type } });
    expect(job.attempts[0].error.message).toMatch(message);
    expect(job.provider).toBe('secondary');
  });

  it('takes finish_reason "length" as a complete answer, unlike a truncated body', async () => {
    const job = await run({ request: { ...chat('a fairly long question to answer'), max_tokens: 2 } });
    expect(job.status).toBe('succeeded');
    expect(job.provider).toBe('primary');
    expect(job.result.choices[0].finish_reason).toBe('length');
    expect(job.attempts).toHaveLength(1);
  });
});
