/**
 * The Anthropic Messages wire format. The fixtures under test/fixtures/anthropic/ follow Anthropic's
 * public API reference: "Create a Message" (https://platform.claude.com/docs/en/api/messages) for
 * request bodies, content blocks, stop reasons and usage, and "Errors"
 * (https://platform.claude.com/docs/en/api/errors) for error bodies and status codes.
 */
import { readFileSync } from 'node:fs';
import type { Message } from '@anthropic-ai/sdk/resources/messages';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { countTokens } from '../../src/mock-provider/dialect.js';
import { anthropicDialect } from '../../src/mock-provider/dialects/anthropic.js';
import { startMockProvider } from '../../src/mock-provider/server.js';
import { anthropicAdapter } from '../../src/providers/anthropic/adapter.js';
import { ProviderClient } from '../../src/providers/client.js';
import type { ChatCompletion, ChatRequest, ProviderResult } from '../../src/providers/types.js';

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../fixtures/anthropic/${name}`, import.meta.url), 'utf8')) as T;

const MODEL = 'claude-sonnet-4-5';
const adapter = anthropicAdapter({ baseUrl: 'https://api.anthropic.com/', apiKey: 'sk-ant-test' });

type Choice = { message: { content: string | null; tool_calls?: { id: string; function: { name: string; arguments: string } }[] }; finish_reason: string };

function completionOf(result: ProviderResult): ChatCompletion & { choices: Choice[] } {
  if (!result.ok) throw new Error(`expected a completion, got ${result.error.type}: ${result.error.message}`);
  return result.completion as ChatCompletion & { choices: Choice[] };
}

describe('OpenAI request → Anthropic Messages request', () => {
  const cases = fixture<{ name: string; request: ChatRequest; expected: unknown; dropped: string[] }[]>('requests.json');

  it.each(cases)('$name', async ({ request, expected, dropped }) => {
    const call = await adapter.buildRequest(request, MODEL);
    expect(JSON.parse(call.body)).toEqual(expected);
    expect(call.dropped ?? []).toEqual(dropped);
  });

  it('posts to /v1/messages with the key, the API version and the configured headers', async () => {
    const call = await adapter.buildRequest({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10 }, MODEL);
    expect(call.url).toBe('https://api.anthropic.com/v1/messages');
    expect(call.headers).toEqual({ 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-test' });

    const custom = anthropicAdapter({ baseUrl: 'https://proxy.example', version: '2024-01-01', headers: { 'anthropic-beta': 'files-api-2025-04-14' } });
    const other = await custom.buildRequest({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10 }, MODEL);
    expect(other.url).toBe('https://proxy.example/v1/messages');
    expect(other.headers).toEqual({ 'content-type': 'application/json', 'anthropic-version': '2024-01-01', 'anthropic-beta': 'files-api-2025-04-14' });
  });
});

describe('Anthropic Message → OpenAI chat.completion', () => {
  const cases = fixture<{ name: string; message: Message; expected: Record<string, unknown> }[]>('responses.json');

  it.each(cases)('$name', ({ message, expected }) => {
    const before = Math.floor(Date.now() / 1000);
    const result = adapter.parseSuccess({ status: 200, headers: {}, body: message }, MODEL);
    const { created, ...completion } = completionOf(result);
    expect(completion).toEqual(expected);
    expect(created).toBeGreaterThanOrEqual(before);
    expect(created).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    expect(result.ok && result.usage).toEqual(expected.usage);
  });

  it.each(fixture<[string, string][]>('stop-reasons.json'))('stop_reason %s → finish_reason %s', (stopReason, finish) => {
    const body = { id: 'msg_01', type: 'message', role: 'assistant', model: MODEL, content: [{ type: 'text', text: 'x' }], stop_reason: stopReason, usage: { input_tokens: 1, output_tokens: 1 } };
    expect(completionOf(adapter.parseSuccess({ status: 200, headers: {}, body }, MODEL)).choices[0]!.finish_reason).toBe(finish);
  });

  it('takes a 200 that is not a message as a bad response', () => {
    const result = adapter.parseSuccess({ status: 200, headers: {}, body: { type: 'error', error: { type: 'api_error', message: 'oops' } } }, MODEL);
    expect(result).toMatchObject({ ok: false, error: { type: 'bad_response', status: 200, retryable: true } });
  });
});

describe('Anthropic errors → the taxonomy', () => {
  const cases = fixture<{ name: string; status: number; headers: Record<string, string>; body?: unknown; expected: Record<string, unknown> }[]>('errors.json');

  it.each(cases)('$name', ({ status, headers, body, expected }) => {
    expect(adapter.classifyError({ status, headers, body })).toMatchObject({ ...expected, status });
  });
});

describe('over HTTP, against the mock speaking Anthropic', () => {
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  let client: ProviderClient;

  beforeAll(async () => {
    mock = await startMockProvider({}, {}, [anthropicDialect]);
    client = new ProviderClient('anthropic', anthropicAdapter({ baseUrl: mock.url, apiKey: 'sk-ant-test' }), { timeout_ms: 5000, max_in_flight: 10 });
  });
  beforeEach(async () => {
    await fetch(`${mock.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await client.close();
    await mock.app.close();
  });

  const ask = (content: unknown, extra: Record<string, unknown> = {}) =>
    client.complete({ messages: [{ role: 'user', content }], max_tokens: 200, ...extra }, MODEL);

  it('answers a plain message as a chat.completion with usage', async () => {
    const result = await ask('Hello there');
    const completion = completionOf(result);
    expect(completion).toMatchObject({ object: 'chat.completion', model: MODEL, id: expect.stringMatching(/^msg_/) });
    expect(completion.choices[0]).toMatchObject({ message: { content: `Mock reply from ${MODEL}: Hello there` }, finish_reason: 'stop' });
    const usage = result.ok ? result.usage : null;
    expect(usage!.prompt_tokens).toBeGreaterThan(0);
    expect(usage!.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
    expect(result.dropped).toBeUndefined();
  });

  it('sends the system prompt: it counts as input, and the reply answers the user', async () => {
    const system = 'You are a meticulous assistant who answers in full sentences. '.repeat(8);
    const plain = await ask('Hello');
    const withSystem = await client.complete({ messages: [{ role: 'system', content: system }, { role: 'user', content: 'Hello' }], max_tokens: 200 }, MODEL);
    expect(completionOf(withSystem).choices[0]!.message.content).toBe(`Mock reply from ${MODEL}: Hello`);
    const extra = (withSystem.ok ? withSystem.usage!.prompt_tokens : 0) - (plain.ok ? plain.usage!.prompt_tokens : 0);
    expect(extra).toBeGreaterThanOrEqual(countTokens(system));
  });

  const weatherTool = {
    type: 'function',
    function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { query: { type: 'string' } } } },
  };

  it('round-trips a tool call: the call comes back with its id, the result goes back under that id', async () => {
    const question = { role: 'user', content: 'Weather in Paris?' };
    const first = completionOf(await client.complete({ messages: [question], tools: [weatherTool], max_tokens: 200 }, MODEL));
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0]!;
    expect(call).toMatchObject({ id: expect.stringMatching(/^toolu_/), function: { name: 'get_weather' } });
    expect(JSON.parse(call.function.arguments)).toEqual({ query: 'Weather in Paris?' });

    const history = [question, choice.message, { role: 'tool', tool_call_id: call.id, content: '18 degrees and sunny' }];
    const second = completionOf(await client.complete({ messages: history, tools: [weatherTool], max_tokens: 200 }, MODEL));
    expect(second.choices[0]).toMatchObject({ message: { content: 'Tool said: 18 degrees and sunny' }, finish_reason: 'stop' });

    const wrongId = [question, choice.message, { role: 'tool', tool_call_id: 'toolu_someone_else', content: '18 degrees' }];
    const refused = await client.complete({ messages: wrongId, tools: [weatherTool], max_tokens: 200 }, MODEL);
    expect(refused).toMatchObject({ ok: false, error: { type: 'invalid_request', status: 400, message: expect.stringMatching(/tool_use_id/) } });
  });

  it('answers two parallel tool calls with one user turn of results', async () => {
    const calls = ['toolu_a', 'toolu_b'].map((id, i) => ({ id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ query: ['Paris', 'Rome'][i] }) } }));
    const messages = [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      { role: 'assistant', content: null, tool_calls: calls },
      { role: 'tool', tool_call_id: 'toolu_a', content: 'Paris: 18' },
      { role: 'tool', tool_call_id: 'toolu_b', content: 'Rome: 24' },
    ];
    const completion = completionOf(await client.complete({ messages, tools: [weatherTool], max_tokens: 200 }, MODEL));
    expect(completion.choices[0]!.message.content).toBe('Tool said: Rome: 24');
  });

  it('honours tool_choice none: the model answers in text', async () => {
    const completion = completionOf(await ask('Weather in Paris?', { tools: [weatherTool], tool_choice: 'none' }));
    expect(completion.choices[0]).toMatchObject({ message: { content: `Mock reply from ${MODEL}: Weather in Paris?` }, finish_reason: 'stop' });
  });

  it('sends image parts as image blocks', async () => {
    const png = { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ' } };
    const link = { type: 'image_url', image_url: { url: 'https://example.com/ant.jpg' } };
    const completion = completionOf(await ask([{ type: 'text', text: 'Describe these' }, png, link]));
    expect(completion.choices[0]!.message.content).toBe(`Mock reply from ${MODEL}: Describe these`);

    const svg = { type: 'image_url', image_url: { url: 'data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=' } };
    const refused = await ask([{ type: 'text', text: 'Describe this' }, svg]);
    expect(refused).toMatchObject({ ok: false, error: { type: 'invalid_request', message: expect.stringMatching(/media_type/) } });
  });

  it('finishes with length when max_tokens cuts the answer', async () => {
    const completion = completionOf(await ask('Tell me everything about the history of the Roman Empire', { max_tokens: 2 }));
    expect(completion.choices[0]!.finish_reason).toBe('length');
    expect(completion.choices[0]!.message.content!.length).toBeLessThanOrEqual(8);
  });

  it('returns JSON content for a json_schema response_format', async () => {
    const response_format = { type: 'json_schema', json_schema: { name: 'reply', schema: { type: 'object', properties: { query: { type: 'string' } } } } };
    const completion = completionOf(await ask('Say hi', { response_format }));
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).toBe('stop');
    expect(choice.message.tool_calls).toBeUndefined();
    expect(JSON.parse(choice.message.content!)).toEqual({ query: 'Say hi' });
  });

  it('fills in max_tokens, which Anthropic requires, and reports it', async () => {
    const result = await client.complete({ messages: [{ role: 'user', content: 'Hi' }] }, MODEL);
    expect(result.ok).toBe(true);
    expect(result.dropped).toEqual(['max_tokens: not set; Anthropic requires it, sent 4096']);

    // Without the default, Anthropic (and the mock) refuse the call outright.
    const res = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-test' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    });
    const body = await res.json();
    expect(res.status).toBe(400);
    expect(body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
    expect(adapter.classifyError({ status: res.status, headers: {}, body })).toMatchObject({ type: 'invalid_request', retryable: false });
  });

  it('authenticates with x-api-key: the right key passes, a wrong one is provider_auth', async () => {
    mock.behaviour.apiKey = 'sk-ant-test';
    expect((await ask('Hi')).ok).toBe(true);
    mock.behaviour.apiKey = 'other';
    expect(await ask('Hi')).toMatchObject({ ok: false, error: { type: 'provider_auth', status: 401, breakerFailure: true } });
  });

  it('reads a 429 as rate_limited with the Retry-After delay', async () => {
    Object.assign(mock.behaviour, { rateLimitRate: 1, retryAfterS: 2 });
    expect(await ask('Hi')).toMatchObject({ ok: false, error: { type: 'rate_limited', status: 429, retryAfterMs: 2000, retryable: true } });
  });

  it('reads a 529 overloaded_error as provider_unavailable', async () => {
    Object.assign(mock.behaviour, { errorRate: 1, errorStatus: 529 });
    expect(await ask('Hi')).toMatchObject({ ok: false, error: { type: 'provider_unavailable', status: 529, retryable: true, breakerFailure: true } });
  });
});
