/**
 * The Gemini wire format (models.generateContent, REST v1beta).
 *
 * Fixtures under test/fixtures/gemini/ are written from Google's public reference:
 * https://ai.google.dev/api/generate-content (request body, GenerateContentResponse, Candidate,
 * FinishReason, PromptFeedback, UsageMetadata, GenerationConfig), https://ai.google.dev/api/caching#Content
 * (Content, Part, FunctionCall, FunctionResponse, Tool, ToolConfig),
 * https://ai.google.dev/gemini-api/docs/thought-signatures and
 * https://ai.google.dev/gemini-api/docs/troubleshooting (error codes). Each file names its pages.
 *
 * The first half checks the translation both ways against those fixtures; the second runs the real
 * client over real HTTP against the mock provider speaking Gemini.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MockDialect } from '../../src/mock-provider/dialect.js';
import { geminiDialect } from '../../src/mock-provider/dialects/gemini.js';
import { DEFAULT_BEHAVIOUR, startMockProvider } from '../../src/mock-provider/server.js';
import { ProviderClient } from '../../src/providers/client.js';
import { geminiAdapter } from '../../src/providers/gemini/adapter.js';
import type { ChatRequest, HttpAnswer, ProviderResult } from '../../src/providers/types.js';

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../fixtures/gemini/${name}`, import.meta.url), 'utf8')).cases as T;

const adapter = geminiAdapter({ baseUrl: 'https://generativelanguage.googleapis.com/v1beta/', apiKey: 'AIza-secret', headers: { 'x-team': 'search' } });
const ok200 = (body: unknown): HttpAnswer => ({ status: 200, headers: {}, body });

function completed(result: ProviderResult) {
  if (!result.ok) throw new Error(`expected a completion, got ${result.error.type}: ${result.error.message}`);
  return result;
}

describe('OpenAI request → Gemini request', () => {
  const cases = fixture<{ name: string; openai: ChatRequest; gemini: unknown; dropped: string[] }[]>('requests.json');

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const built = await adapter.buildRequest(c.openai, 'gemini-2.5-flash');
    expect(JSON.parse(built.body)).toEqual(c.gemini);
    expect(built.dropped ?? []).toEqual(c.dropped);
  });

  it('posts to models/<model>:generateContent with the key in x-goog-api-key, never in the URL', async () => {
    const built = await adapter.buildRequest({ messages: [{ role: 'user', content: 'hi' }] }, 'models/gemini-2.5-flash');
    expect(built.url).toBe('https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent');
    expect(built.url).not.toContain('AIza-secret');
    expect(built.headers).toEqual({ 'content-type': 'application/json', 'x-team': 'search', 'x-goog-api-key': 'AIza-secret' });
  });

  it.each([
    ['auto', { mode: 'AUTO' }],
    ['required', { mode: 'ANY' }],
    ['none', { mode: 'NONE' }],
  ])('tool_choice %s → functionCallingConfig %j', async (choice, config) => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
    const built = await adapter.buildRequest({ messages: [{ role: 'user', content: 'hi' }], tools, tool_choice: choice }, 'm');
    expect(JSON.parse(built.body).toolConfig).toEqual({ functionCallingConfig: config });
  });

  it('reports tool arguments that are not a JSON object, and tool results for unknown calls', async () => {
    const built = await adapter.buildRequest(
      {
        messages: [
          { role: 'user', content: 'go' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{not json' } }] },
          { role: 'tool', tool_call_id: 'c9', content: 'done' },
        ],
      },
      'm',
    );
    expect(JSON.parse(built.body).contents[1].parts[0].functionCall).toEqual({ name: 'f', args: {} });
    expect(built.dropped).toEqual([
      'messages[1].tool_calls[0].function.arguments: not a JSON object, sent as {}',
      'messages[2]: tool_call_id "c9" matches no earlier tool call, so its function name is unknown',
    ]);
  });

  it("names a tool result after the tool message's own name when its call is not in the history", async () => {
    const built = await adapter.buildRequest({ messages: [{ role: 'tool', tool_call_id: 'gone', name: 'search', content: '[1,2]' }] }, 'm');
    expect(JSON.parse(built.body).contents).toEqual([{ role: 'user', parts: [{ functionResponse: { name: 'search', response: { result: [1, 2] } } }] }]);
    expect(built.dropped).toBeUndefined();
  });
});

describe('Gemini response → OpenAI chat.completion', () => {
  const cases = fixture<{ name: string; model: string; gemini: unknown; completion: Record<string, unknown>; usage: unknown }[]>('responses.json');

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const before = Math.floor(Date.now() / 1000);
    const result = completed(adapter.parseSuccess(ok200(c.gemini), c.model));
    expect(result.completion).toMatchObject({ object: 'chat.completion', model: c.model, ...c.completion });
    expect(result.completion.created).toBeGreaterThanOrEqual(before);
    expect(result.usage).toEqual(c.usage);
    expect(result.completion.usage).toEqual(c.usage);
  });

  it('puts a thought signature only on the call that had one', () => {
    const c = cases.find((x) => x.name.startsWith('function calls become tool_calls'))!;
    const calls = (completed(adapter.parseSuccess(ok200(c.gemini), c.model)).completion.choices[0] as any).message.tool_calls;
    expect(calls[0].extra_content).toEqual({ google: { thought_signature: 'CiQB0e2Kb3Rlc3Qtc2lnbmF0dXJl' } });
    expect(calls[1]).not.toHaveProperty('extra_content');
  });

  it('makes an id when Gemini sends no responseId, and the tool call ids share it', () => {
    const body = { candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'f', args: {} } }] }, finishReason: 'STOP' }] };
    const { completion } = completed(adapter.parseSuccess(ok200(body), 'gemini-2.5-flash'));
    const id = String(completion.id);
    expect(id).toMatch(/^chatcmpl-[\w-]+$/);
    expect((completion.choices[0] as any).message.tool_calls[0].id).toBe(`call_${id.slice('chatcmpl-'.length)}_0`);
    expect(completion.model).toBe('gemini-2.5-flash');
    expect(completion).not.toHaveProperty('usage');
  });

  it.each([
    ['STOP', 'stop'],
    ['MAX_TOKENS', 'length'],
    ['SAFETY', 'content_filter'],
    ['RECITATION', 'content_filter'],
    ['BLOCKLIST', 'content_filter'],
    ['PROHIBITED_CONTENT', 'content_filter'],
    ['SPII', 'content_filter'],
    ['OTHER', 'stop'],
    ['MALFORMED_FUNCTION_CALL', 'stop'],
    [undefined, 'stop'],
  ])('finishReason %s → %s', (finishReason, expected) => {
    const body = { candidates: [{ content: { role: 'model', parts: [{ text: 'x' }] }, ...(finishReason && { finishReason }) }] };
    expect((completed(adapter.parseSuccess(ok200(body), 'm')).completion.choices[0] as any).finish_reason).toBe(expected);
  });

  it.each([
    ['an empty object', {}],
    ['no candidates and no block reason', { candidates: [], usageMetadata: { promptTokenCount: 3 } }],
    ['a JSON string', 'ok'],
  ])('%s is a bad_response', (_name, body) => {
    const result = adapter.parseSuccess(ok200(body), 'm');
    expect(result).toMatchObject({ ok: false, error: { type: 'bad_response', retryable: true, status: 200 } });
  });
});

describe('Gemini errors → the taxonomy', () => {
  const cases = fixture<{ name: string; status: number; headers: Record<string, string>; body?: unknown; error: Record<string, unknown> }[]>('errors.json');

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(adapter.classifyError({ status: c.status, headers: c.headers, body: c.body })).toMatchObject({ status: c.status, ...c.error });
  });
});

describe('over the wire, against the mock speaking Gemini', () => {
  /** The bodies the mock received, so tests can check what actually went over the wire. */
  const received: any[] = [];
  const recording: MockDialect = {
    ...geminiDialect,
    parse: (req) => {
      received.push(req.body);
      return geminiDialect.parse(req);
    },
  };
  let mock: Awaited<ReturnType<typeof startMockProvider>>;
  let client: ProviderClient;
  const model = 'gemini-2.5-flash';
  const weatherTool = {
    type: 'function',
    function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { query: { type: 'string' } }, required: ['query'], additionalProperties: false } },
  };

  beforeAll(async () => {
    mock = await startMockProvider({}, {}, [recording]);
    client = new ProviderClient('gemini', geminiAdapter({ baseUrl: `${mock.url}/v1beta`, apiKey: 'test-key' }), { timeout_ms: 5000, max_in_flight: 10 });
  });
  beforeEach(() => {
    Object.assign(mock.behaviour, DEFAULT_BEHAVIOUR);
    received.length = 0;
  });
  afterAll(async () => {
    await client.close();
    await mock.app.close();
  });

  const lastBody = () => received.at(-1);
  const message = (r: ProviderResult) => (completed(r).completion.choices[0] as any).message;

  it('answers a plain prompt with text, usage and the model version', async () => {
    const result = completed(await client.complete({ messages: [{ role: 'user', content: 'Hello there' }] }, model));
    expect(result.completion).toMatchObject({
      object: 'chat.completion',
      model,
      id: expect.stringMatching(/^mock-\d+$/),
      choices: [{ index: 0, message: { role: 'assistant', content: `Mock reply from ${model}: Hello there` }, finish_reason: 'stop' }],
    });
    expect(result.usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) });
    expect(result.usage!.total_tokens).toBe(result.usage!.prompt_tokens + result.usage!.completion_tokens);
    expect(mock.stats.models).toEqual({ [model]: 1 });
  });

  it('sends system messages as systemInstruction', async () => {
    const result = await client.complete({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] }, model);
    expect(message(result).content).toBe(`Mock reply from ${model}: Hi`);
    expect(lastBody().systemInstruction).toEqual({ parts: [{ text: 'Be brief.' }] });
    expect(lastBody().contents).toEqual([{ role: 'user', parts: [{ text: 'Hi' }] }]);
  });

  it('round-trips a tool call: tool_calls with ids and a signature, then the result back to text', async () => {
    const ask = { role: 'user', content: 'Weather in Paris?' };
    const first = await client.complete({ messages: [ask], tools: [weatherTool] }, model);
    const assistant = message(first);
    expect(completed(first).completion.choices[0]).toMatchObject({ finish_reason: 'tool_calls' });
    expect(assistant.content).toBeNull();
    expect(assistant.tool_calls).toEqual([
      {
        id: expect.stringMatching(/^call_mock-\d+_0$/),
        type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ query: 'Weather in Paris?' }) },
        extra_content: { google: { thought_signature: expect.any(String) } },
      },
    ]);

    const toolResult = { role: 'tool', tool_call_id: assistant.tool_calls[0].id, content: '{"temp_c":18}' };
    const second = await client.complete({ messages: [ask, assistant, toolResult], tools: [weatherTool] }, model);
    expect(message(second).content).toBe('Tool said: {"temp_c":18}');
    expect(completed(second).completion.choices[0]).toMatchObject({ finish_reason: 'stop' });
    // The signature Gemini gave is the one sent back, on the call it came with.
    const replayed = lastBody().contents[1].parts[0];
    expect(replayed.thoughtSignature).toBe(assistant.tool_calls[0].extra_content.google.thought_signature);
    expect(lastBody().contents[2].parts[0].functionResponse).toEqual({ name: 'get_weather', response: { result: { temp_c: 18 } } });
  });

  it('replays a tool call from another provider, without a signature, through the skip value', async () => {
    const history = [
      { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"query":"Oslo"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_01', content: 'snow' },
    ];
    const result = await client.complete({ messages: history, tools: [weatherTool] }, model);
    expect(message(result).content).toBe('Tool said: snow');

    // Without it the mock refuses, as Gemini 3 does: the test above would pass for the wrong reason otherwise.
    const bare = JSON.parse(JSON.stringify(lastBody()));
    delete bare.contents[1].parts[0].thoughtSignature;
    const res = await fetch(`${mock.url}/v1beta/models/${model}:generateContent`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bare) });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 400, status: 'INVALID_ARGUMENT', message: expect.stringContaining('thought_signature') } });
  });

  it('sends an image as inlineData', async () => {
    const content = [
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
    ];
    const result = await client.complete({ messages: [{ role: 'user', content }] }, model);
    expect(message(result).content).toBe(`Mock reply from ${model}: What is this?`);
    expect(lastBody().contents[0].parts[1]).toEqual({ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } });
  });

  it('cuts the answer at max_tokens and says length', async () => {
    const result = completed(await client.complete({ messages: [{ role: 'user', content: 'Tell me a long story about the sea' }], max_tokens: 2 }, model));
    expect(lastBody().generationConfig).toEqual({ maxOutputTokens: 2 });
    expect(result.completion.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Mock rep' } });
  });

  it('asks for JSON with response_format and gets JSON', async () => {
    const result = await client.complete({ messages: [{ role: 'user', content: 'Give JSON' }], response_format: { type: 'json_object' } }, model);
    expect(JSON.parse(message(result).content)).toEqual({ reply: `Mock reply from ${model}: Give JSON` });
    expect(lastBody().generationConfig).toEqual({ responseMimeType: 'application/json' });
  });

  it('authenticates with x-goog-api-key', async () => {
    Object.assign(mock.behaviour, { apiKey: 'test-key' });
    expect((await client.complete({ messages: [{ role: 'user', content: 'hi' }] }, model)).ok).toBe(true);
  });

  it('a wrong key is provider_auth', async () => {
    Object.assign(mock.behaviour, { apiKey: 'other' });
    const result = await client.complete({ messages: [{ role: 'user', content: 'hi' }] }, model);
    expect(result).toMatchObject({ ok: false, error: { type: 'provider_auth', status: 401, retryable: true, breakerFailure: true, message: 'Invalid API key provided.' } });
  });

  it('429 with Retry-After is rate_limited with the delay', async () => {
    Object.assign(mock.behaviour, { rateLimitRate: 1, retryAfterS: 2 });
    const result = await client.complete({ messages: [{ role: 'user', content: 'hi' }] }, model);
    expect(result).toMatchObject({ ok: false, error: { type: 'rate_limited', status: 429, retryAfterMs: 2000, breakerFailure: false } });
  });

  it('503 is provider_unavailable', async () => {
    Object.assign(mock.behaviour, { errorRate: 1, errorStatus: 503 });
    const result = await client.complete({ messages: [{ role: 'user', content: 'hi' }] }, model);
    expect(result).toMatchObject({ ok: false, error: { type: 'provider_unavailable', status: 503, retryable: true, message: 'Injected failure (503).' } });
  });

  it('reports dropped parameters with the result', async () => {
    const result = await client.complete({ messages: [{ role: 'user', content: 'hi' }], logit_bias: { '1': 5 } }, model);
    expect(result).toMatchObject({ ok: true, dropped: ['logit_bias: Gemini has no token bias'] });
  });
});
