/**
 * Streaming in the OpenAI wire format (and Azure's), both ends: the mock streams as OpenAI does (the
 * official `openai` SDK reads it), and the adapter's decoder turns that stream back into chunks and
 * the completion they add up to, with faults before and during the stream.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockProvider } from '../../src/mock-provider/server.js';
import { azureOpenAIAdapter } from '../../src/providers/azure-openai/adapter.js';
import { ProviderClient, type StreamResult } from '../../src/providers/client.js';
import { openAIAdapter } from '../../src/providers/openai/adapter.js';
import type { ChatChunk } from '../../src/providers/types.js';

type Mock = Awaited<ReturnType<typeof startMockProvider>>;

describe('OpenAI-format streaming', () => {
  let mock: Mock;
  let client: ProviderClient;
  let azure: ProviderClient;
  beforeAll(async () => {
    mock = await startMockProvider();
    client = new ProviderClient('oai', openAIAdapter({ baseUrl: mock.baseUrl, apiKey: 'sk-stream-test' }), { timeout_ms: 2000, max_in_flight: 4 });
    azure = new ProviderClient('az', azureOpenAIAdapter({ baseUrl: mock.url, apiVersion: '2024-10-21', apiKey: 'az-key' }), { timeout_ms: 2000, max_in_flight: 4 });
  });
  beforeEach(async () => {
    await fetch(`${mock.url}/_mock/reset`, { method: 'POST' });
  });
  afterAll(async () => {
    await Promise.all([client.close(), azure.close(), mock.app.close()]);
  });
  const behave = (b: Record<string, unknown>) => fetch(`${mock.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });

  const run = async (c: ProviderClient, request: Record<string, unknown>, model = 'gpt-test') => {
    const batches: ChatChunk[][] = [];
    const result: StreamResult = await c.stream({ messages: [{ role: 'user', content: 'say something long enough to stream' }], ...request }, model, {
      completionId: 'chatcmpl-test',
      onChunks: async (chunks) => void batches.push(chunks),
    });
    return { result, chunks: batches.flat() };
  };

  it('is what the official SDK reads as an OpenAI stream', async () => {
    const sdk = new OpenAI({ baseURL: mock.baseUrl, apiKey: 'k' });
    const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hello there' }], stream: true, stream_options: { include_usage: true } });
    const deltas: string[] = [];
    let usage: unknown;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(deltas.length).toBeGreaterThan(2);
    expect(deltas.join('')).toBe('Mock reply from gpt-test: hello there');
    expect(usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) });
  });

  it('decodes text chunks, asks for usage, and adds them up to the completion the call would give', async () => {
    const { result, chunks } = await run(client, {});
    expect(result.ok).toBe(true);
    expect((mock.stats.last_request as Record<string, unknown>)).toMatchObject({ stream: true, stream_options: { include_usage: true }, model: 'gpt-test' });
    expect(chunks[0]!.choices[0]!.delta).toMatchObject({ role: 'assistant' });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('Mock reply from gpt-test: say something long enough to stream');
    expect(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop')).toHaveLength(1);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: expect.any(Number) } });
    if (!result.ok) return;
    expect(result.streamed).toBe(chunks.length);
    expect(result.firstChunkMs).toBeGreaterThanOrEqual(0);
    expect(result.completion).toMatchObject({ id: 'chatcmpl-test', object: 'chat.completion', model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }] });
    expect(result.usage).toEqual(expect.objectContaining({ prompt_tokens: expect.any(Number), total_tokens: expect.any(Number) }));
  });

  it('merges a streamed tool call: its id and name first, its arguments in fragments', async () => {
    const { result, chunks } = await run(client, { tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }] });
    expect(chunks.filter((c) => (c.choices[0]?.delta.tool_calls as unknown[] | undefined)?.length).length).toBeGreaterThan(2);
    expect(result.ok && result.completion.choices[0]).toMatchObject({
      message: { content: null, tool_calls: [{ id: expect.stringMatching(/^call_mock_/), type: 'function', function: { name: 'lookup', arguments: JSON.stringify({ query: 'say something long enough to stream' }) } }] },
      finish_reason: 'tool_calls',
    });
  });

  it('classifies a refusal before the stream like any answer, with nothing streamed', async () => {
    await behave({ rules: [{ match: 'long enough', status: 400, message: 'Bad temperature.' }] });
    const { result, chunks } = await run(client, {});
    expect(chunks).toEqual([]);
    expect(result).toMatchObject({ ok: false, streamed: 0, error: { type: 'invalid_request', status: 400, message: 'Bad temperature.' } });
  });

  it('reports an error event mid-stream with what had been streamed', async () => {
    await behave({ streamFailAfter: 3, streamFault: 'error' });
    const { result, chunks } = await run(client, {});
    expect(chunks.length).toBe(3);
    expect(result).toMatchObject({ ok: false, streamed: 3, error: { type: 'provider_unavailable', message: 'Injected failure mid-stream.', retryable: true } });
  });

  it('reports a reset mid-stream and a stream that falls silent', async () => {
    await behave({ streamFailAfter: 2, streamFault: 'reset' });
    const reset = await run(client, {});
    expect(reset.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'bad_response' } });
    await behave({ streamFailAfter: 2, streamFault: 'hang' });
    const quick = new ProviderClient('oai', openAIAdapter({ baseUrl: mock.baseUrl }), { timeout_ms: 300, max_in_flight: 1 });
    const t0 = Date.now();
    const silent = await run(quick, {});
    expect(silent.result).toMatchObject({ ok: false, streamed: 2, error: { type: 'timeout' } });
    expect(Date.now() - t0).toBeLessThan(2000);
    await quick.close();
  });

  it('streams from Azure, skipping its content-filter prelude', async () => {
    const { result, chunks } = await run(azure, {}, 'my-deployment');
    expect(chunks.every((c) => c.choices.length > 0 || c.usage)).toBe(true);
    expect(chunks[0]!.choices[0]!.delta).toMatchObject({ role: 'assistant' });
    expect(result.ok && result.completion.choices[0]).toMatchObject({ message: { content: 'Mock reply from my-deployment: say something long enough to stream' } });
  });
});
