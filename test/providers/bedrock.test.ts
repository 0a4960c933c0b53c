/**
 * The Bedrock Converse adapter: translation both ways, SigV4, error classification, and calls over
 * real HTTP through ProviderClient against the mock's Bedrock dialect.
 *
 * Fixtures (test/fixtures/bedrock/) follow AWS's public Converse API reference,
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html (request and
 * response syntax, ContentBlock, ToolConfiguration, ToolChoice, StopReason, TokenUsage, Errors),
 * and the tool-use example (`top_song`, WZPZ) of
 * https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bedrockDialect } from '../../src/mock-provider/dialects/bedrock.js';
import { DEFAULT_BEHAVIOUR, startMockProvider } from '../../src/mock-provider/server.js';
import { bedrockAdapter, classifyBedrockError } from '../../src/providers/bedrock/adapter.js';
import { redact, secretsOf } from '../../src/providers/redact.js';
import { fromConverse, toConverse } from '../../src/providers/bedrock/translate.js';
import { ProviderClient } from '../../src/providers/client.js';
import type { ChatRequest, ProviderResult } from '../../src/providers/types.js';
import { Receiver } from '../support/receiver.js';
import { expectedSignature, parseAuthorization } from '../support/sigv4.js';

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../fixtures/bedrock/${name}`, import.meta.url), 'utf8')) as T;

const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
/** What SigV4 signs for MODEL's path: `:` is `%3A` on the wire, and encoded again (`%253A`) in the canonical request. */
const CANONICAL_URI = '/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse';
const HELLO: ChatRequest = { messages: [{ role: 'user', content: 'Hello' }] };

describe('translation, OpenAI to Converse', () => {
  const cases = fixture<{ name: string; request: ChatRequest; converse: unknown; dropped: string[] }[]>('requests.json');
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const { body, dropped } = toConverse(c.request);
    expect(body).toEqual(c.converse);
    expect(dropped).toEqual(c.dropped);
  });
});

describe('translation, Converse to OpenAI', () => {
  const cases = fixture<{ name: string; headers?: Record<string, string>; converse: unknown; id?: string; message: unknown; finish_reason: string; usage: unknown }[]>(
    'responses.json',
  );
  const adapter = bedrockAdapter({ region: REGION, credentials: CREDENTIALS });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const result = adapter.parseSuccess({ status: 200, headers: c.headers ?? {}, body: c.converse }, MODEL);
    if (!result.ok) throw new Error(result.error.message);
    const { completion, usage } = result;
    expect(completion).toMatchObject({ object: 'chat.completion', model: MODEL, usage: c.usage });
    expect(completion.id).toBe(c.id ?? completion.id);
    expect(completion.id).toMatch(/^chatcmpl-./);
    expect(Math.abs((completion.created as number) - Date.now() / 1000)).toBeLessThan(5);
    expect(completion.choices).toEqual([{ index: 0, message: c.message, logprobs: null, finish_reason: c.finish_reason }]);
    expect(usage).toEqual(c.usage);
  });

  it('answers without a message are a bad_response', () => {
    const result = adapter.parseSuccess({ status: 200, headers: {}, body: { output: {}, stopReason: 'end_turn' } }, MODEL);
    expect(result).toMatchObject({ ok: false, error: { type: 'bad_response', retryable: true } });
  });

  it('generates distinct ids when Bedrock sends no request id', () => {
    const body = cases[0]!.converse;
    const [a, b] = [fromConverse(body, MODEL), fromConverse(body, MODEL)];
    if ('invalid' in a || 'invalid' in b) throw new Error('expected completions');
    expect(a.completion.id).not.toBe(b.completion.id);
  });
});

describe('error classification', () => {
  const cases = fixture<{ name: string; status: number; headers: Record<string, string>; body: unknown; expect: Record<string, unknown> }[]>('errors.json');
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const error = classifyBedrockError({ status: c.status, headers: c.headers, body: c.body });
    expect(error).toMatchObject(c.expect);
    if (!('retryAfterMs' in c.expect)) expect(error.retryAfterMs).toBeUndefined();
  });

  it('never passes credentials on in a message, once the provider client has it', async () => {
    const token = 'IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN';
    const message = [
      'The request signature we calculated does not match the signature you provided.',
      'The Canonical String for this request should have been',
      `'POST\n/model/x/converse\n\nhost:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-security-token:${token}\n'`,
    ].join('\n\n');
    const error = classifyBedrockError({ status: 403, headers: { 'x-amzn-errortype': 'InvalidSignatureException' }, body: { message } });
    expect(error.type).toBe('provider_auth');
    // The client redacts every adapter's messages with the provider's configured secrets.
    const out = redact(error.message, secretsOf([CREDENTIALS.accessKeyId, CREDENTIALS.secretAccessKey, token]));
    expect(out).toContain('does not match');
    expect(out).not.toContain(token);
    expect(out).toContain('x-amz-security-token:[redacted]');
  });
});

// ---- SigV4, computed here from the specification with node:crypto, independently of the adapter's signer.

/** Lower-cases header names, as a server sees them. */
const lower = (headers: Record<string, string>) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));

describe('SigV4 signing', () => {
  it('targets the regional endpoint with the model id encoded in the path', async () => {
    const call = await bedrockAdapter({ region: 'eu-west-3', credentials: CREDENTIALS }).buildRequest(HELLO, MODEL);
    expect(call.url).toBe('https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
    expect(lower(call.headers).host).toBe('bedrock-runtime.eu-west-3.amazonaws.com');
  });

  it('signs host, content type, accept and date, over the double-encoded path, as an independent computation does', async () => {
    const call = await bedrockAdapter({ region: REGION, credentials: CREDENTIALS }).buildRequest(HELLO, MODEL);
    const headers = lower(call.headers);
    const auth = parseAuthorization(headers.authorization);
    expect(auth).toMatchObject({ accessKeyId: 'AKIDEXAMPLE', region: REGION, service: 'bedrock', day: headers['x-amz-date']!.slice(0, 8) });
    expect(auth.signedHeaders).toEqual(expect.arrayContaining(['accept', 'content-type', 'host', 'x-amz-date']));
    expect(headers).toMatchObject({ 'content-type': 'application/json', accept: 'application/json', host: 'bedrock-runtime.us-east-1.amazonaws.com' });

    const args = { headers, signedHeaders: auth.signedHeaders, body: call.body, secret: CREDENTIALS.secretAccessKey, region: REGION };
    expect(auth.signature).toBe(expectedSignature({ ...args, canonicalUri: CANONICAL_URI }));
    // The check is sensitive to the path: signing it encoded once only, or decoded, gives other signatures.
    expect(auth.signature).not.toBe(expectedSignature({ ...args, canonicalUri: '/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse' }));
    expect(auth.signature).not.toBe(expectedSignature({ ...args, canonicalUri: `/model/${MODEL}/converse` }));
  });

  it('signs a session token', async () => {
    const sessionToken = 'IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN';
    const call = await bedrockAdapter({ region: REGION, credentials: { ...CREDENTIALS, sessionToken } }).buildRequest(HELLO, MODEL);
    const headers = lower(call.headers);
    const auth = parseAuthorization(headers.authorization);
    expect(headers['x-amz-security-token']).toBe(sessionToken);
    expect(auth.signedHeaders).toContain('x-amz-security-token');
    expect(auth.signature).toBe(
      expectedSignature({ canonicalUri: CANONICAL_URI, headers, signedHeaders: auth.signedHeaders, body: call.body, secret: CREDENTIALS.secretAccessKey, region: REGION }),
    );
  });

  describe('as received on the wire', () => {
    let server: Receiver;
    let client: ProviderClient;
    const answer = {
      output: { message: { role: 'assistant', content: [{ text: 'hi' }] } },
      stopReason: 'end_turn',
      usage: { inputTokens: 1, outputTokens: 1, totalTokens: 2 },
      metrics: { latencyMs: 1 },
    };

    beforeAll(async () => {
      server = await new Receiver().start();
      client = new ProviderClient('bedrock', bedrockAdapter({ region: REGION, baseUrl: server.origin, credentials: CREDENTIALS }), { timeout_ms: 5000, max_in_flight: 2 });
    });

    afterAll(async () => {
      await client.close();
      await server.stop();
    });

    it('the path, host and body undici sends are the ones that were signed', async () => {
      server.script.push({ status: 200, headers: { 'content-type': 'application/json', 'x-amzn-requestid': 'req-123' }, body: JSON.stringify(answer) });
      const result = await client.complete(HELLO, MODEL);
      expect(result).toMatchObject({ ok: true, completion: { id: 'chatcmpl-req-123' } });
      const received = server.received.at(-1);
      expect(received!.url).toBe('/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
      expect(received!.headers.host).toBe(server.origin.slice('http://'.length));
      const auth = parseAuthorization(received!.headers.authorization);
      expect(auth.signature).toBe(
        expectedSignature({ canonicalUri: CANONICAL_URI, headers: received!.headers, signedHeaders: auth.signedHeaders, body: received!.body, secret: CREDENTIALS.secretAccessKey, region: REGION }),
      );
    });
  });
});

// ---- Over real HTTP against the mock provider's Bedrock dialect.

describe('wire, against the mock provider', () => {
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  let client: ProviderClient;
  const clients: ProviderClient[] = [];
  const clientFor = (credentials: typeof CREDENTIALS) => {
    const c = new ProviderClient('bedrock', bedrockAdapter({ region: REGION, baseUrl: mock.url, credentials }), { timeout_ms: 5000, max_in_flight: 10 });
    clients.push(c);
    return c;
  };
  const message = (result: ProviderResult) => {
    if (!result.ok) throw new Error(`${result.error.type}: ${result.error.message}`);
    return (result.completion.choices[0] as { message: Record<string, unknown>; finish_reason: string });
  };

  beforeAll(async () => {
    mock = await startMockProvider({ apiKey: 'AKIDEXAMPLE' }, {}, [bedrockDialect]);
    client = clientFor(CREDENTIALS);
  });

  afterEach(() => {
    Object.assign(mock.behaviour, DEFAULT_BEHAVIOUR, { apiKey: 'AKIDEXAMPLE' });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await mock.app.close();
  });

  it('plain text, with the model id (and its colon) reaching Bedrock intact', async () => {
    const result = await client.complete(HELLO, MODEL);
    expect(message(result)).toMatchObject({ message: { role: 'assistant', content: `Mock reply from ${MODEL}: Hello` }, finish_reason: 'stop' });
    expect(result).toMatchObject({
      ok: true,
      completion: { object: 'chat.completion', model: MODEL },
      usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) },
    });
    expect(mock.stats.models[MODEL]).toBeGreaterThan(0);
  });

  it('a system prompt travels as system blocks', async () => {
    const plain = await client.complete(HELLO, MODEL);
    const withSystem = await client.complete({ messages: [{ role: 'system', content: 'You are a pirate. '.repeat(20) }, ...HELLO.messages] }, MODEL);
    expect(message(withSystem).finish_reason).toBe('stop');
    if (!plain.ok || !withSystem.ok) throw new Error('expected completions');
    expect(withSystem.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens);
  });

  it('tool call round trip: tools offered give tool_calls with ids; the tool result back gives text', async () => {
    const parameters = { type: 'object', properties: { sign: { type: 'string' } } };
    const tools = [{ type: 'function', function: { name: 'top_song', description: 'Most popular song on a station', parameters } }];
    const question = { role: 'user', content: 'What is the most popular song on WZPZ?' };
    const first = message(await client.complete({ messages: [question], tools, tool_choice: 'auto' }, MODEL));
    expect(first.finish_reason).toBe('tool_calls');
    expect(first.message.content).toBeNull();
    const calls = first.message.tool_calls as { id: string; type: string; function: { name: string; arguments: string } }[];
    expect(calls).toEqual([{ id: expect.stringMatching(/^tooluse_/), type: 'function', function: { name: 'top_song', arguments: expect.any(String) } }]);
    expect(JSON.parse(calls[0]!.function.arguments)).toEqual({ query: question.content });

    // The mock refuses a toolResult whose id matches no toolUse in the turn before, so this checks the ids survive the trip.
    const second = message(
      await client.complete(
        { messages: [question, { role: 'assistant', content: null, tool_calls: calls }, { role: 'tool', tool_call_id: calls[0]!.id, content: '{"song":"Elemental Hotel"}' }], tools },
        MODEL,
      ),
    );
    expect(second).toMatchObject({ finish_reason: 'stop', message: { content: 'Tool said: {"song":"Elemental Hotel"}' } });
    expect(second.message.tool_calls).toBeUndefined();
  });

  it('an image data URL is sent as bytes; a link is reported as dropped', async () => {
    const result = await client.complete(
      {
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Describe this' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==' } },
              { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
            ],
          },
        ],
      },
      MODEL,
    );
    expect(message(result).message.content).toBe(`Mock reply from ${MODEL}: Describe this`);
    expect(result.dropped).toEqual(['messages[0].content[2]: Converse takes images as base64 data URLs only, not links']);
  });

  it('max_tokens reached is finish_reason length', async () => {
    const result = await client.complete({ ...HELLO, max_tokens: 2 }, MODEL);
    expect(message(result).finish_reason).toBe('length');
  });

  it('a conversation opening with the assistant is accepted, and the added user turn reported', async () => {
    const result = await client.complete({ messages: [{ role: 'assistant', content: 'Hi, how can I help?' }, { role: 'user', content: 'Say hello' }], seed: 1 }, MODEL);
    expect(message(result).message.content).toBe(`Mock reply from ${MODEL}: Say hello`);
    expect(result.dropped).toEqual([
      'seed: Converse has no sampling seed',
      'messages: Converse needs a user turn first; "(conversation start)" was sent before the opening assistant turn',
    ]);
  });

  it('a wrong access key id is provider_auth', async () => {
    const result = await clientFor({ ...CREDENTIALS, accessKeyId: 'AKIDWRONG' }).complete(HELLO, MODEL);
    expect(result).toMatchObject({ ok: false, error: { type: 'provider_auth', status: 401, breakerFailure: true } });
  });

  it('a 429 ThrottlingException with Retry-After is rate_limited', async () => {
    Object.assign(mock.behaviour, { rateLimitRate: 1, retryAfterS: 2 });
    const result = await client.complete(HELLO, MODEL);
    expect(result).toMatchObject({ ok: false, error: { type: 'rate_limited', status: 429, retryAfterMs: 2000, retryable: true, breakerFailure: false } });
  });

  it('a 503 is provider_unavailable', async () => {
    Object.assign(mock.behaviour, { errorRate: 1, errorStatus: 503 });
    const result = await client.complete(HELLO, MODEL);
    expect(result).toMatchObject({ ok: false, error: { type: 'provider_unavailable', status: 503, retryable: true, breakerFailure: true } });
  });
});
