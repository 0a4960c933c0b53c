import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { parseConfig } from '../src/config/load.js';
import { freePort } from '../src/redis/embedded.js';
import { dropPrefix, type MockServer, redisUrl, startBroker, startMock, testPrefix, waitFor, withRedis } from './support/broker.js';
import { startFleet } from './support/fleet.js';
import { watchBroker, writeConfig } from './support/process.js';

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
    try {
      const stream = await client.chat.completions.create({ model: 'fast', messages: [{ role: 'user', content: 'across the process line' }], stream: true, stream_options: { include_usage: true } });
      const chunks: OpenAI.ChatCompletionChunk[] = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Mock reply from gpt-4o-mini: across the process line');
      const id = `job_${chunks[0]!.id.slice('chatcmpl-'.length)}`;
      // The call was the worker process's, not this one's (it runs no pools); its log line comes
      // through the worker's stdout, a moment after the job's end reached the caller.
      await waitFor(async () => worker.lines.some((l) => l.msg === 'attempt' && l.job === id), 5000);
      expect(fleet.api.runtime.pool).toBeUndefined();
      const kept = await withRedis((r) => r.xlen(`${fleet.api.prefix}:stream:${id}`));
      expect(kept).toBe(chunks.length);
    } finally {
      // Stopped whatever happened: a worker left running would take the next test's jobs.
      await worker.stop('SIGTERM');
    }
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

  it('ends an open stream with a shutting-down error on Ctrl-C, and the job its worker was running still finishes', async () => {
    const port = await freePort();
    const raw = {
      redis: { url: redisUrl(), prefix: testPrefix() },
      server: { port, host: '127.0.0.1' },
      providers: { mock: { type: 'openai', base_url: mock.baseUrl } },
      models: { fast: ['mock/gpt-4o-mini'] },
      tasks: { default: 'fast' },
    };
    await fetch(`${mock.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ streamChunkDelayMs: 250 }) });
    // `switchyard start` as a terminal runs it: the leader of its own process group.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start'], { env: { ...process.env, SWITCHYARD_CONFIG: writeConfig(raw), LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const broker = watchBroker(child);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await broker.waitForLog('API listening');
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'fast', messages: [{ role: 'user', content: 'a slow stream cut short by a Ctrl-C at the terminal' }], stream: true }) });
      const id = res.headers.get('x-switchyard-job-id')!;
      const reader = res.body!.getReader();
      let text = '';
      while ((text.match(/^data: /gm) ?? []).length < 2) text += new TextDecoder().decode((await reader.read()).value);
      process.kill(-child.pid!, 'SIGINT');
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const last = text.trim().split('\n\n').at(-1)!;
      expect(JSON.parse(last.slice('data: '.length))).toMatchObject({ error: { code: 'server_shutting_down' } });
      expect(await exited).toBe(0);
      // The worker in that process finished the call it held before it exited.
      const reader2 = await startBroker(parseConfig(raw, {}, 'test'), { workers: undefined });
      try {
        expect((await reader2.call('GET', `/v1/jobs/${id}`)).body.status).toBe('succeeded');
      } finally {
        await reader2.close();
      }
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
      await dropPrefix(raw.redis.prefix);
    }
  }, 30_000);
});
