import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { dropPrefix, type MockServer, redisUrl, startBroker, startMock, type TestBroker, testPrefix } from './support/broker.js';

/** The caller speaks OpenAI and gets an OpenAI chat.completion back, whichever wire format answered. */
describe('fallback across wire formats, with tool calls', () => {
  let down: MockServer;
  let up: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    down = await startMock({ errorRate: 1, errorStatus: 503 });
    up = await startMock();
    const providers = (m: MockServer, tag: string) => ({
      [`${tag}-openai`]: { type: 'openai', base_url: m.baseUrl, api_key: 'sk-x' },
      [`${tag}-anthropic`]: { type: 'anthropic', base_url: m.url, api_key: 'sk-ant-x' },
      [`${tag}-gemini`]: { type: 'gemini', base_url: `${m.url}/v1beta`, api_key: 'g-x' },
      [`${tag}-bedrock`]: { type: 'bedrock', base_url: m.url, region: 'us-east-1', aws_access_key_id: 'AKIDEXAMPLE', aws_secret_access_key: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
    });
    const config = parseConfig(
      {
        redis: { url: redisUrl(), prefix: testPrefix() },
        providers: { ...providers(down, 'down'), ...providers(up, 'up') },
        models: {
          'openai-to-anthropic': ['down-openai/gpt-4o-mini', 'up-anthropic/claude-sonnet-4-5'],
          'anthropic-to-openai': ['down-anthropic/claude-sonnet-4-5', 'up-openai/gpt-4o-mini'],
          'openai-to-gemini': ['down-openai/gpt-4o-mini', 'up-gemini/gemini-2.5-flash'],
          'gemini-to-openai': ['down-gemini/gemini-2.5-flash', 'up-openai/gpt-4o-mini'],
          'bedrock-to-anthropic': ['down-bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0', 'up-anthropic/claude-sonnet-4-5'],
          'openai-to-bedrock': ['down-openai/gpt-4o-mini', 'up-bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0'],
        },
        tasks: { default: 'openai-to-anthropic' },
        breaker: { failure_threshold: 1000 },
      },
      {},
      'test',
    );
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker.close();
    await Promise.all([down.app.close(), up.app.close()]);
    await dropPrefix(broker.prefix);
  });

  const tools = [
    {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Current weather in a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    },
  ];
  const ask = { role: 'user', content: 'What is the weather in Paris?' };

  const run = async (model: string, messages: unknown[]) => {
    const { body } = await broker.call('POST', '/v1/jobs', { model, request: { messages, tools, max_tokens: 200 } });
    return (await broker.call('GET', `/v1/jobs/${body.id}?wait=30`)).body;
  };

  const chains = ['openai-to-anthropic', 'anthropic-to-openai', 'openai-to-gemini', 'gemini-to-openai', 'bedrock-to-anthropic', 'openai-to-bedrock'];

  it.each(chains)('%s: the tool call comes back in the same chat.completion shape', async (model) => {
    const job = await run(model, [ask]);
    expect(job.status).toBe('succeeded');
    expect(job.attempts.map((a: { outcome: string }) => a.outcome)).toEqual(['fallback', 'succeeded']);
    expect(job.attempts[0].error).toMatchObject({ type: 'provider_unavailable', status: 503 });
    const { result } = job;
    expect(result.object).toBe('chat.completion');
    expect(typeof result.id).toBe('string');
    expect(typeof result.created).toBe('number');
    expect(result.choices).toHaveLength(1);
    const [choice] = result.choices;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.tool_calls).toHaveLength(1);
    const [call] = choice.message.tool_calls;
    expect(call.type).toBe('function');
    expect(typeof call.id).toBe('string');
    expect(call.id.length).toBeGreaterThan(0);
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ query: 'What is the weather in Paris?' });
    expect(result.usage.total_tokens).toBe(result.usage.prompt_tokens + result.usage.completion_tokens);
    expect(job.usage).toEqual(result.usage);
  });

  it('records in the ledger what a target could not honour, instead of changing its meaning silently', async () => {
    const { body } = await broker.call('POST', '/v1/jobs', { model: 'up-anthropic/claude-sonnet-4-5', request: { messages: [ask], seed: 7, temperature: 1.5, max_tokens: 50 } });
    const job = (await broker.call('GET', `/v1/jobs/${body.id}?wait=30`)).body;
    expect(job.status).toBe('succeeded');
    const dropped: string[] = job.attempts[0].dropped;
    expect(dropped.some((d) => d.startsWith('seed'))).toBe(true);
    expect(dropped.some((d) => d.startsWith('temperature'))).toBe(true);
    expect(up.stats.last_request).not.toHaveProperty('seed');
  });

  it.each(chains)('%s: the tool result goes back in OpenAI form and the answer comes back as text', async (model) => {
    const first = await run(model, [ask]);
    const call = first.result.choices[0].message.tool_calls[0];
    const job = await run(model, [ask, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"temp_c": 18}' }]);
    expect(job.status).toBe('succeeded');
    const [choice] = job.result.choices;
    expect(choice.finish_reason).toBe('stop');
    expect(choice.message.content).toContain('Tool said:');
    expect(choice.message.content).toContain('18');
    expect(choice.message.tool_calls ?? []).toEqual([]);
  });
});
