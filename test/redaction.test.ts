import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/redis/embedded.js';
import { redact, secretsOf } from '../src/providers/redact.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

describe('what redaction removes from provider messages, and what it keeps', () => {
  const secrets = secretsOf(['my-configured-key-1234', undefined, 'short']);
  it.each([
    ['Incorrect API key provided: my-configured-key-1234.', 'Incorrect API key provided: [redacted].'],
    ['Incorrect API key provided: sk-proj-AbC123dEf456GhI789.', 'Incorrect API key provided: [redacted].'],
    ['key sk-ant-api03-abcdefghijklmnop rejected', 'key [redacted] rejected'],
    ['header Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.payload', 'header Authorization: [redacted]'],
    ['The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE', 'The security token included in the request is invalid: [redacted]'],
    ['API key not valid: AIzaSyA1234567890abcdefghijklmnopq', 'API key not valid: [redacted]'],
    ['x-amz-security-token:IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD', 'x-amz-security-token:[redacted]'],
    ['upstream 10.0.3.7:8443 refused', 'upstream [address] refused'],
    ['connect to [fd00::12]:443 failed', 'connect to [address] failed'],
    ['see http://llm-gateway.internal.corp:9000/v1/chat for details', 'see [address] for details'],
  ])('%s', (message, expected) => expect(redact(message, secrets)).toBe(expected));

  it.each([
    'messages[0].content must be a string',
    "max_tokens is too large: 100000. This model supports at most 16384 completion tokens",
    'Rate limit reached for gpt-4o-mini in organization org-123 on requests per min (RPM): Limit 500, Used 500',
    'This model\'s maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.',
    'model "claude-sonnet-4-5-20250929" not found',
  ])('keeps an ordinary message: %s', (message) => expect(redact(message, secrets)).toBe(message));
});

/*
 * What a tenant reads of a provider failure: the kind of failure and the provider's explanation,
 * never a credential the provider echoed or an address inside the operator's network.
 */
describe('provider error text as tenants see it', () => {
  let mock: MockServer;
  let broker: TestBroker;
  let closedPort: number;
  const KEY = 'sk-test-p-secret-value';

  beforeAll(async () => {
    mock = await startMock({
      rules: [
        { match: 'echo-me', status: 400, message: 'Invalid request (sent with ${header:authorization}) via gateway 10.20.30.40:8443, see https://llm-gw.internal.corp/v1' },
        { match: 'stream-echo', streamFailAfter: 2, message: 'Stream aborted for ${header:authorization} at 10.20.30.40:8443' },
      ],
    });
    closedPort = await freePort();
    const config = configFor(
      { p: mock, refused: mock, nowhere: mock },
      { models: { fast: ['p/m'] }, tasks: { default: 'fast', down: ['refused/m', 'nowhere/m'] }, breaker: { failure_threshold: 100 } },
    );
    config.providers.refused!.base_url = `http://127.0.0.1:${closedPort}/v1`;
    config.providers.nowhere!.base_url = 'http://internal-llm.invalid/v1';
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker?.close();
    await mock?.app.close();
    if (broker) await dropPrefix(broker.prefix);
  });

  const run = async (body: Record<string, unknown>) => {
    const { body: job } = await broker.call('POST', '/v1/jobs', body);
    return (await broker.call('GET', `/v1/jobs/${job.id}?wait=20`)).body;
  };

  it('redacts a key and an address the provider quoted back, in the job and in the logs', async () => {
    const job = await run({ request: chat('echo-me please') });
    expect(job.status).toBe('failed');
    expect(job.error).toMatchObject({ type: 'invalid_request', status: 400 });
    const text = JSON.stringify(job);
    expect(text).toContain('Invalid request (sent with Bearer [redacted]) via gateway [address], see [address]');
    for (const leak of [KEY, '10.20.30.40', 'llm-gw.internal']) expect(text).not.toContain(leak);
    expect(broker.logs.raw.join('\n')).not.toContain(KEY);
  });

  it('redacts what a provider quoted back in an error sent mid-stream, in the stream, the job and the logs', async () => {
    const res = await fetch(`${broker.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'fast', messages: [{ role: 'user', content: 'stream-echo now' }], stream: true }) });
    const streamed = await res.text();
    expect(streamed).toContain('Stream aborted for Bearer [redacted] at [address]');
    const job = (await broker.call('GET', `/v1/jobs/${res.headers.get('x-switchyard-job-id')}`)).body;
    expect(job.status).toBe('failed');
    for (const text of [streamed, JSON.stringify(job), broker.logs.raw.join('\n')]) for (const leak of [KEY, '10.20.30.40']) expect(text).not.toContain(leak);
  });

  it('names the kind of connection failure, not the address it dialled; the log keeps the detail', async () => {
    const job = await run({ task: 'down', request: chat('nobody home') });
    expect(job.status).toBe('failed');
    expect(job.attempts.map((a: { error: { message: string } }) => a.error.message)).toEqual([
      'the provider refused the connection (ECONNREFUSED)',
      "the provider's host name does not resolve (ENOTFOUND)",
    ]);
    const text = JSON.stringify(job);
    for (const leak of ['127.0.0.1', String(closedPort), 'internal-llm']) expect(text).not.toContain(leak);
    const logged = broker.logs.lines.filter((l) => l.msg === 'attempt' && l.job === job.id);
    expect(logged.map((l) => l.detail).join(' ')).toContain(`127.0.0.1:${closedPort}`);
  });
});
