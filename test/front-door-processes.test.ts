import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockServer, redisUrl, startMock, testPrefix, waitFor, withRedis } from './support/broker.js';
import { startFleet } from './support/fleet.js';

/**
 * Streams that cross processes: the API process holds the caller, a worker process (its own OS
 * process, sharing only Redis) calls the provider, and the chunks travel between them through the
 * job's Redis Stream. A worker killed mid-stream cannot hand the stream to another: the job fails
 * as interrupted, and the caller hears it.
 */
describe('front-door streams across processes', () => {
  let mock: MockServer;
  let fleet: Awaited<ReturnType<typeof startFleet>>;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startMock();
    fleet = await startFleet({
      redis: { url: redisUrl(), prefix: testPrefix() },
      providers: { mock: { type: 'openai', base_url: mock.baseUrl, max_in_flight: 8 } },
      models: { fast: ['mock/gpt-4o-mini'], backup: ['mock/gpt-4o-mini', 'mock/gpt-4.1'] },
      tasks: { default: 'fast' },
      // Short locks so a lost worker's hop is picked up in seconds.
      workers: { lock_ms: 1500, stalled_interval_ms: 1000 },
    });
    client = new OpenAI({ baseURL: `${fleet.api.url}/v1`, apiKey: 'dev', maxRetries: 0 });
  });
  afterAll(async () => {
    await fleet?.close();
    await mock?.app.close();
  });

  it('relays chunks a worker process writes to the API process holding the caller', async () => {
    const worker = await fleet.spawnWorker();
    const stream = await client.chat.completions.create({ model: 'fast', messages: [{ role: 'user', content: 'across the process line' }], stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Mock reply from gpt-4o-mini: across the process line');
    const id = `job_${chunks[0]!.id.slice('chatcmpl-'.length)}`;
    // The call was the worker process's, not this one's (it runs no pools).
    expect(worker.lines.some((l) => l.msg === 'attempt' && l.job === id)).toBe(true);
    expect(fleet.api.runtime.pool).toBeUndefined();
    const kept = await withRedis((r) => r.xlen(`${fleet.api.prefix}:stream:${id}`));
    expect(kept).toBe(chunks.length);
    await worker.stop('SIGTERM');
  });

  it('fails a job whose worker was killed mid-stream as interrupted, with no second call, and ends the caller\'s stream with the error', async () => {
    await fetch(`${mock.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ streamChunkDelayMs: 400 }) });
    const victim = await fleet.spawnWorker();
    const stream = await client.chat.completions.create({ model: 'backup', messages: [{ role: 'user', content: 'a stream that loses its worker halfway' }], stream: true });
    const got: OpenAI.ChatCompletionChunk[] = [];
    const ended = (async () => {
      for await (const chunk of stream) {
        got.push(chunk);
        if (got.length === 2) await victim.stop('SIGKILL');
      }
    })().catch((e: unknown) => e);
    await waitFor(async () => got.length >= 2, 10_000);
    const callsBefore = mock.stats.calls;
    // Another worker finds the lost hop and may not stream it again.
    const survivor = await fleet.spawnWorker();
    const err = await ended;
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as Error).message).toMatch(/worker running it was lost/);
    const id = `job_${got[0]!.id.slice('chatcmpl-'.length)}`;
    const job = (await fleet.api.call('GET', `/v1/jobs/${id}`)).body;
    expect(job).toMatchObject({ status: 'failed', error: { type: 'stream_interrupted' } });
    expect(mock.stats.calls).toBe(callsBefore);
    expect(fleet.ends.get(id)).toBe(1);
    await survivor.stop('SIGTERM');
  }, 30_000);
});
