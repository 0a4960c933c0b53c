import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerOptions } from 'bullmq';
import { chat, completedHop, configFor, dropPrefix, type MockServer, monitorRedis, startBroker, startMock, type TestBroker, testRedis, waitFor } from './support/broker.js';
import { hopJobId } from '../src/queues/provider-queues.js';

describe('job lifecycle', () => {
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    mock = await startMock({ latencyMs: 20, rules: [{ match: 'slow-answer', latencyMs: 800 }] });
    broker = await startBroker(
      configFor({ primary: mock }, { models: { fast: ['primary/model-a'], smart: ['primary/model-b'] }, tasks: { default: 'fast', analyze: 'smart', inline: ['primary/model-c'] } }),
    );
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('accepts a job with 202 and a Location, runs it on the provider, and returns an OpenAI chat.completion', async () => {
    const submitted = await broker.call('POST', '/v1/jobs', { task: 'analyze', priority: 3, metadata: { ticket: 'T-1' }, request: { ...chat('summarise this'), temperature: 0.2, custom_field: 'passes through' } });
    expect(submitted.status).toBe(202);
    expect(submitted.headers.get('location')).toBe(`/v1/jobs/${submitted.body.id}`);
    expect(submitted.body).toMatchObject({ object: 'job', status: 'queued', task: 'analyze', priority: 3, metadata: { ticket: 'T-1' }, provider: 'primary', provider_model: 'model-b' });
    expect(submitted.body.id).toMatch(/^job_[A-Za-z0-9_-]{20}$/);

    const done = await broker.call('GET', `/v1/jobs/${submitted.body.id}?wait=20`);
    expect(done.status).toBe(200);
    const job = done.body;
    expect(job.status).toBe('succeeded');
    expect(job.result.object).toBe('chat.completion');
    expect(job.result.model).toBe('model-b');
    expect(job.result.choices[0].message.content).toContain('summarise this');
    expect(job.usage.total_tokens).toBe(job.usage.prompt_tokens + job.usage.completion_tokens);
    expect(job.usage.total_tokens).toBeGreaterThan(0);
    expect(job.attempts).toHaveLength(1);
    expect(job.attempts[0]).toMatchObject({ provider: 'primary', model: 'model-b', outcome: 'succeeded', hop: 0 });
    expect(job.started_at).toBeGreaterThanOrEqual(job.created_at);
    expect(job.finished_at).toBeGreaterThanOrEqual(job.started_at);
    expect(job.error).toBeNull();
    expect(mock.stats.models['model-b']).toBe(1);
    // Fields Switchyard does not know reach an OpenAI-format provider unchanged.
    expect(mock.stats.last_request).toMatchObject({ model: 'model-b', temperature: 0.2, custom_field: 'passes through' });
  });

  it('routes by model alias, by provider/model, by inline task chain, and by the default task', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model: 'smart' }, 'model-b'],
      [{ model: 'primary/some-exact-model' }, 'some-exact-model'],
      [{ task: 'inline' }, 'model-c'],
      [{}, 'model-a'],
      [{ task: 'analyze', model: 'fast' }, 'model-a'],
    ];
    for (const [route, expected] of cases) {
      const res = await broker.call('POST', '/v1/jobs', { ...route, request: chat() });
      expect(res.status, JSON.stringify(route)).toBe(202);
      const done = await broker.call('GET', `/v1/jobs/${res.body.id}?wait=20`);
      expect(done.body.status).toBe('succeeded');
      expect(done.body.result.model, JSON.stringify(route)).toBe(expected);
    }
  });

  it('keeps any text a caller sends in a record field, single jobs and bulk alike: non-ASCII exactly, a lone surrogate as U+FFFD', async () => {
    // The record's small fields reach the script as one JSON array (createJobs.lua decodes it with
    // cjson, which refuses the escape JSON.stringify writes for a lone surrogate).
    const model = 'primary/模型-naïve-☃-\ud800';
    const metadata = { note: 'ünïcödé ☃ \ud83d\ude00 and a lone \udc00' };
    const single = await broker.call('POST', '/v1/jobs', { model, metadata, request: chat('odd text') });
    expect(single.status).toBe(202);
    const bulk = await broker.call('POST', '/v1/jobs/bulk', { jobs: [{ model, metadata, request: chat('odd text, bulk') }] });
    expect(bulk.status).toBe(202);
    for (const id of [single.body.id, bulk.body.data[0].id]) {
      const done = await broker.call('GET', `/v1/jobs/${id}?wait=20`);
      expect(done.body.status).toBe('succeeded');
      // A plain field as ioredis wrote it before (UTF-8 has no lone surrogates); the chain is JSON, so exact.
      expect(done.body.model).toBe('primary/模型-naïve-☃-\ufffd');
      expect(done.body.provider_model).toBe('模型-naïve-☃-\ud800');
      expect(done.body.metadata).toEqual(metadata);
    }
  });

  it('keeps a queued job\'s record compact with its request beside it, and runs a record written with the request inside', async () => {
    const client = testRedis();
    const { store } = broker.runtime;
    const keys = store.keys;
    try {
      // Written, not enqueued: a queued job as it waits (a tenant of its own, so the lists below do not see it).
      const tenant = 'store-only';
      const id = keys.newJobId(tenant);
      // Routed as most jobs are: the chain in order, its target's context window known.
      const routing = { alias: 'fast', strategy: 'ordered', input_tokens: 3, candidates: [{ target: 'primary/model-a', tier: 1, context_window: 128_000, position: 0 }] };
      await store.create({ id, tenant, task: 'default', model: null, priority: 5, metadata: {}, chain: ['primary/model-a'], hop: 0, request: chat('kept beside'), webhook_url: null, deadline_at: null, created_at: Date.now(), routing });
      // Short values only, so Redis keeps the hash as a listpack (about half a hashtable's bytes).
      expect(await client.object('ENCODING', keys.job(id))).toBe('listpack');
      expect(JSON.parse((await client.get(keys.jobRequest(id)))!)).toEqual(chat('kept beside'));
      expect((await store.get(id))?.routing).toEqual(routing);
      // So is a hop's BullMQ job, at every priority (paused, so no worker takes them meanwhile; they name no record).
      const queue = broker.runtime.queues.get('primary');
      await queue.pause();
      try {
        for (const priority of [1, 10]) {
          const other = keys.newJobId(tenant);
          await broker.runtime.queues.enqueueHop('primary', other, 0, priority);
          expect(await client.object('ENCODING', `${queue.keys['']}${hopJobId(other, 0)}`)).toBe('listpack');
        }
      } finally {
        await queue.resume();
      }

      // As the version before wrote it: the request a field of the hash. Its claim moves it out.
      await client.hset(keys.job(id), 'request', (await client.get(keys.jobRequest(id)))!);
      await client.del(keys.jobRequest(id));
      expect(await store.start(id, 0, Date.now())).toMatchObject({ kind: 'ok', request: chat('kept beside') });
      expect(await client.hexists(keys.job(id), 'request')).toBe(0);
      // A failed job keeps its request as long as its record, for an operator's retry.
      await store.settle(id, 0, null, { status: 'failed', error: { type: 'internal_error', message: 'test' } });
      const [recordTtl, requestTtl] = await Promise.all([client.pttl(keys.job(id)), client.pttl(keys.jobRequest(id))]);
      expect(requestTtl).toBeGreaterThan(0);
      expect(Math.abs(recordTtl - requestTtl)).toBeLessThan(1000);

      // One written the old way that ends without running: its prompt goes all the same.
      const unrun = keys.newJobId(tenant);
      await store.create({ id: unrun, tenant, task: 'default', model: null, priority: 5, metadata: {}, chain: ['primary/model-a'], hop: 0, request: chat('never run'), webhook_url: null, deadline_at: null, created_at: Date.now(), routing });
      await client.hset(keys.job(unrun), 'request', (await client.get(keys.jobRequest(unrun)))!);
      await client.del(keys.jobRequest(unrun));
      expect(await store.end(unrun, 'cancelled')).toMatchObject({ kind: 'ended' });
      expect(await client.hexists(keys.job(unrun), 'request')).toBe(0);
    } finally {
      client.disconnect();
    }
  });

  it('adds a bulk request\'s hops as BullMQ jobs of their queues, each with its priority, and runs them most urgent first', async () => {
    const second = await startMock();
    const config = configFor({ primary: mock, secondary: second }, { models: { fast: ['primary/model-a'], other: ['secondary/model-s'] } });
    const intakeOnly = await startBroker(config, { workers: undefined });
    let ids: string[] = [];
    try {
      // More than one script's worth (200 hops a call) on one queue, and some on another.
      const jobs = Array.from({ length: 450 }, (_, i) => ({ model: i % 9 === 0 ? 'other' : 'fast', priority: 1 + (i % 10), request: chat(`bulk ${i}`) }));
      const res = await intakeOnly.call('POST', '/v1/jobs/bulk', { jobs });
      expect(res.status).toBe(202);
      ids = res.body.data.map((j: { id: string }) => j.id);
      for (const [provider, expected] of [['primary', 400], ['secondary', 50]] as const) {
        const queue = intakeOnly.runtime.queues.get(provider);
        expect(await queue.getPrioritizedCount()).toBe(expected);
        const hops = await queue.getJobs(['prioritized'], 0, -1);
        expect(hops).toHaveLength(expected);
        for (const hop of hops) {
          const i = ids.indexOf(hop.data.id);
          expect(hop.id).toBe(hopJobId(hop.data.id, 0));
          expect(hop.data).toEqual({ id: ids[i], hop: 0 });
          expect(hop.opts.priority).toBe(jobs[i]!.priority);
          expect(hop.name).toBe('hop');
        }
      }
      // Adding a hop again (a replayed request) leaves the one there.
      await intakeOnly.runtime.queues.enqueueHops(ids.slice(1, 4).map((id) => ({ provider: 'primary', id, hop: 0, priority: 1 })));
      expect(await intakeOnly.runtime.queues.get('primary').getPrioritizedCount()).toBe(400);
    } finally {
      await intakeOnly.close();
    }
    // A worker takes them in priority order: every priority-1 job starts before any priority-10 one.
    const workers = await startBroker(config, { api: false, workers: ['primary', 'secondary'] });
    try {
      const store = workers.runtime.store;
      await waitFor(async () => (await store.getMany(ids)).every((j) => j?.status === 'succeeded'), 30_000);
      const done = (await store.getMany(ids)).map((j) => j!);
      const lastUrgent = Math.max(...done.filter((j) => j.priority === 1 && j.chain[0]!.startsWith('primary/')).map((j) => j.started_at!));
      const firstLeast = Math.min(...done.filter((j) => j.priority === 10 && j.chain[0]!.startsWith('primary/')).map((j) => j.started_at!));
      expect(lastUrgent).toBeLessThanOrEqual(firstLeast);
    } finally {
      await workers.close();
      await second.app.close();
      await dropPrefix(config.redis.prefix);
    }
  });

  /**
   * [source, command, key] of each command on this broker's keys while `fn` runs, in the order Redis
   * ran them (MONITOR), up to a fence sent once `fn` is done.
   */
  async function commandsDuring<T>(fn: () => Promise<T>): Promise<{ result: T; seen: [string, string, string][] }> {
    const monitor = await monitorRedis();
    const seen: [string, string, string][] = [];
    let fenced!: () => void;
    const fence = new Promise<void>((r) => (fenced = r));
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (args[0]?.toLowerCase() === 'echo' && args[1] === 'fence') fenced();
      const key = args.find((a) => a.startsWith(broker.prefix) || a.includes(`${broker.prefix.slice(1, -1)}`));
      if (key) seen.push([source, args[0]!.toLowerCase(), key]);
    });
    const result = await fn();
    const client = testRedis();
    await client.echo('fence');
    await fence;
    monitor.disconnect();
    client.disconnect();
    return { result, seen };
  }

  /** One job run to its end on `primary` under the monitor, with its record's and its first hop's keys. */
  async function oneJobWatched(content: string) {
    const queue = broker.runtime.queues.get('primary');
    const { result: { res, hop }, seen } = await commandsDuring(async () => {
      const res = await broker.call('POST', '/v1/jobs', { request: chat(content) });
      expect((await broker.call('GET', `/v1/jobs/${res.body.id}?wait=20`)).body.status).toBe('succeeded');
      return { res, hop: await completedHop(queue, res.body.id) };
    });
    return { queue, res, hop, seen, recordKey: broker.runtime.store.keys.job(res.body.id), hopKey: `${queue.keys['']}${hop.id}` };
  }

  /** The first and last index of the script run (commands from source "lua", one after another) that holds command `at`. */
  function scriptAround(seen: [string, string, string][], at: number): { start: number; end: number } {
    let start = at;
    while (start > 0 && seen[start - 1]![0] === 'lua') start--;
    let end = at;
    while (end + 1 < seen.length && seen[end + 1]![0] === 'lua') end++;
    return { start, end };
  }

  it('writes a job\'s record and adds its first hop in one script, so no crash can leave one without the other', async () => {
    const { result: res, seen } = await commandsDuring(async () => {
      const res = await broker.call('POST', '/v1/jobs', { request: chat() });
      expect(res.status).toBe(202);
      await broker.call('GET', `/v1/jobs/${res.body.id}?wait=20`);
      return res;
    });
    const recordKey = broker.runtime.store.keys.job(res.body.id);
    const hopKey = `${broker.runtime.queues.get('primary').keys['']}${hopJobId(res.body.id, 0)}`;
    const written = seen.findIndex(([, cmd, key]) => cmd === 'hset' && key === recordKey);
    const added = seen.findIndex(([, cmd, key]) => cmd === 'hmset' && key === hopKey);
    expect(written).toBeGreaterThan(0);
    expect(added).toBeGreaterThan(written);
    // Redis runs a script whole: commands from inside one script (source "lua") come one after
    // another, with no other client's command between them.
    const between = seen.slice(written, added + 1).map(([source]) => source);
    if (broker.config.redis.shards === 0) {
      expect(between.every((s) => s === 'lua')).toBe(true);
      // EVAL when the script was not yet cached on this Redis (ioredis falls back to it).
      expect(['evalsha', 'eval']).toContain(seen[written - 1]?.[1]);
    } else {
      // Sharded, the hop's queue has a slot of its own: the hop is added by BullMQ once the record is written.
      expect(between.some((s) => s !== 'lua')).toBe(true);
    }
  });

  it('claims a hop in the step BullMQ fetches it, one round trip fewer a job, unless sharded', async () => {
    const { queue, res, hop, seen, recordKey, hopKey } = await oneJobWatched('claimed on fetch');
    // The claim reads the record's status and hop (startAttempt's first command), inside a script.
    const claimAt = seen.findIndex(([source, cmd, key]) => source === 'lua' && cmd === 'hmget' && key === recordKey);
    expect(claimAt).toBeGreaterThan(0);
    const step = seen.slice(scriptAround(seen, claimAt).start, claimAt);
    // BullMQ's fetch of that hop (its lock, its hash) ran in the same script, just before the claim.
    const fetchedInStep = step.some(([, , key]) => key.startsWith(hopKey));
    expect(fetchedInStep).toBe(broker.config.redis.shards === 0);
    // Either way the hop says which worker took it: BullMQ's processedBy and the claim's log line.
    expect(hop.processedBy).toMatch(/^.+:\d+$/);
    const { logs } = await queue.getJobLogs(hop.id!);
    expect(logs.filter((l) => l.startsWith('claimed by'))).toEqual([`claimed by worker ${hop.processedBy}`]);
    // What BullMQ keeps of the hop is its own data: the claim rode only on the fetch's answer.
    expect(hop.data).toEqual({ id: res.body.id, hop: 0 });
  });

  it('settles a hop that succeeded in the step BullMQ completes it, one round trip fewer a job, unless sharded', async () => {
    const { queue, res, hop, seen, recordKey, hopKey } = await oneJobWatched('settled on finish');
    // The settle's write of the record (status, result, ledger) is the last write of the record.
    const settleAt = seen.findLastIndex(([source, cmd, key]) => source === 'lua' && cmd === 'hset' && key === recordKey);
    expect(settleAt).toBeGreaterThan(0);
    // BullMQ's own step writes the hop's hash (its return value, finishedOn) after the settle, in the same script.
    const completedInStep = seen.slice(settleAt + 1, scriptAround(seen, settleAt).end + 1).some(([, , key]) => key === hopKey);
    expect(completedInStep).toBe(broker.config.redis.shards === 0);
    // The hop completes with its log's outcome line, short enough that Redis keeps its hash compact.
    expect(hop.returnvalue).toMatch(/^succeeded in \d+ ms: \d+ tokens$/);
    const client = testRedis();
    expect(await client.object('ENCODING', hopKey)).toBe('listpack');
    client.disconnect();
    const job = await broker.runtime.store.get(res.body.id);
    expect(job!.attempts).toEqual([expect.objectContaining({ outcome: 'succeeded', provider: 'primary' })]);
    expect((await queue.getJobLogs(hop.id!)).logs.at(-1)).toMatch(/^succeeded in \d+ ms/);
  });

  it('hands a large request with quotes, backslashes and non-ASCII to the provider byte for byte through the claimed fetch', async () => {
    // The claim that rides on BullMQ's fetch carries the request as JSON text inside the hop's data.
    const content = `${'"quoted" \\ back\\slash ünïcödé ☃ 😀 \n'.repeat(1200)}end`;
    const request = { ...chat(content), temperature: 0.5, metadata_like: { nested: ['a', '"b"', 'c\\d'] } };
    const res = await broker.call('POST', '/v1/jobs', { request });
    expect(res.status).toBe(202);
    expect((await broker.call('GET', `/v1/jobs/${res.body.id}?wait=20`)).body.status).toBe('succeeded');
    expect(mock.stats.last_request).toEqual({ ...request, model: 'model-a' });
  });

  it('completes the hop of a job that ended while its call ran, saying so, and keeps the call in its ledger', async () => {
    const res = await broker.call('POST', '/v1/jobs', { request: chat('slow-answer') });
    const key = broker.runtime.store.keys.job(res.body.id);
    const client = testRedis();
    await waitFor(async () => (await client.hget(key, 'status')) === 'running');
    // Ended under the call (expired), by nothing the worker heard: its call runs on and succeeds.
    await client.hset(key, 'status', 'expired');
    client.disconnect();
    const queue = broker.runtime.queues.get('primary');
    const hop = await completedHop(queue, res.body.id);
    expect(hop.returnvalue).toBe('discarded: the job had already ended (cancelled or expired)');
    const job = await broker.runtime.store.get(res.body.id);
    expect(job!.status).toBe('expired');
    // The call happened and may be billed: it is in the ledger, as discarded.
    expect(job!.attempts).toEqual([expect.objectContaining({ outcome: 'discarded', provider: 'primary', model: 'model-a' })]);
    expect((await queue.getJobLogs(hop.id!)).logs.at(-1)).toMatch(/^succeeded in \d+ ms.*; discarded: the job had already ended$/);
  });

  it('keeps the job record in Redis with a retention TTL and bounded BullMQ history', async () => {
    const res = await broker.call('POST', '/v1/jobs', { request: chat() });
    await broker.call('GET', `/v1/jobs/${res.body.id}?wait=20`);
    const client = testRedis();
    const ttl = await client.pttl(broker.runtime.store.keys.job(res.body.id));
    expect(ttl).toBeGreaterThan(6 * 24 * 3600 * 1000);
    expect(ttl).toBeLessThanOrEqual(7 * 24 * 3600 * 1000);
    // A finished record keeps the result but lets the prompt go.
    const fields = await client.hkeys(broker.runtime.store.keys.job(res.body.id));
    expect(fields).toContain('result');
    expect(fields).not.toContain('request');
    expect(await client.exists(broker.runtime.store.keys.jobRequest(res.body.id))).toBe(0);
    // Kept for Bull Board, bounded by the workers' retention; no hop stores the retention itself
    // (BullMQ keeps a job's options in its hash, so that would cost every queued hop).
    const hop = await completedHop(broker.runtime.queues.get('primary'), res.body.id);
    expect(hop?.opts.removeOnComplete).toBeUndefined();
    const [worker] = (broker.runtime.pool as unknown as { workers: { opts: WorkerOptions }[] }).workers;
    // Failed hops are kept longer than completed ones: they are what an operator comes back to.
    expect(worker?.opts.removeOnComplete).toEqual({ count: 1000, age: 3600 });
    expect(worker?.opts.removeOnFail).toEqual({ count: 5000, age: 7 * 24 * 3600 });
    expect(hop?.opts.priority).toBe(5);
    client.disconnect();
  });

  it('lists the caller\'s jobs newest first with status filter and cursor pagination', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await broker.call('POST', '/v1/jobs', { request: chat(`list ${i}`) })).body.id);
    for (const id of ids) await broker.call('GET', `/v1/jobs/${id}?wait=20`);
    const page1 = await broker.call('GET', '/v1/jobs?limit=3&status=succeeded');
    expect(page1.status).toBe(200);
    expect(page1.body).toMatchObject({ object: 'list', has_more: true });
    expect(page1.body.data).toHaveLength(3);
    expect(page1.body.data.map((j: { id: string }) => j.id)).toEqual([ids[4], ids[3], ids[2]]);
    const page2 = await broker.call('GET', `/v1/jobs?limit=2&status=succeeded&after=${page1.body.last_id}`);
    expect(page2.body.data.map((j: { id: string }) => j.id)).toEqual([ids[1], ids[0]]);
    const none = await broker.call('GET', '/v1/jobs?status=cancelled');
    expect(none.body.data).toEqual([]);
    expect(none.body.has_more).toBe(false);
  });

  it('answers 404 in the error shape for an unknown job and an unknown route', async () => {
    const job = await broker.call('GET', '/v1/jobs/job_doesnotexist');
    expect(job.status).toBe(404);
    expect(job.body.error).toMatchObject({ type: 'not_found_error', param: 'id', code: 'job_not_found' });
    const route = await broker.call('GET', '/v1/nothing-here');
    expect(route.status).toBe(404);
    expect(route.body.error.type).toBe('not_found_error');
  });

  it('serves /healthz and /readyz', async () => {
    expect((await broker.call('GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await broker.call('GET', '/readyz')).body).toMatchObject({ status: 'ready' });
  });
});
