import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSubmit } from '../src/cli/submit.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor, withRedis } from './support/broker.js';

interface CliRun {
  child: ChildProcess;
  /** Resolves when the process has exited, with what it printed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Runs the submit command from source in its own process, as a pipeline would run it. */
function startCli(args: string[], env: Record<string, string> = {}): CliRun {
  const inherited = { ...process.env };
  delete inherited.SWITCHYARD_URL;
  delete inherited.SWITCHYARD_API_KEY;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'submit', ...args], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, exited };
}

const runCli = (args: string[], env: Record<string, string> = {}) => startCli(args, env).exited;

type ResultLine = { line: number; custom_id?: string; id: string | null; status: string; result: any; error: any };

/** Every complete line of a results file, parsed; throws on a line that is not JSON. */
function readResults(path: string): ResultLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ResultLine);
}

const completeLines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').length - 1 : 0);

/** Waits until the results file has `n` complete lines while the run is still going. */
async function untilResults(run: CliRun, out: string, n: number): Promise<void> {
  let stderr = '';
  run.child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    await waitFor(async () => {
      if (run.child.exitCode !== null) throw new Error(`the run exited (${run.child.exitCode}) first: ${stderr}`);
      return completeLines(out) >= n;
    }, 30_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}; ${completeLines(out)} results; stderr: ${stderr}`);
  }
}

const jsonl = (rows: unknown[]) => `${rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`;

/** Line n (1-based) asks "question n" and carries custom_id c-n, so each result can be traced to its line. */
const questions = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    i % 2 === 0 ? { request: chat(`question ${i + 1}`), metadata: { custom_id: `c-${i + 1}` } } : { ...chat(`question ${i + 1}`), metadata: { custom_id: `c-${i + 1}` } },
  );

/** A stderr for runSubmit in this process, optionally claiming to be a terminal. */
function captureStream(isTTY: boolean): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  Object.assign(stream, { isTTY });
  return { stream, text: () => text };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Jobs the broker holds for a tenant: its index zset. */
const jobCount = (broker: TestBroker, tenant = 'default') => withRedis((redis) => redis.zcard(broker.runtime.store.keys.jobIndex(tenant)));

/** A temp dir, mock providers and a broker for one describe block, torn down after it. */
function brokerFixture<P extends string>(dirPrefix: string, behaviours: Record<P, Partial<MockServer['behaviour']>>, extra: Record<string, unknown> = {}) {
  const ctx = {} as { dir: string; broker: TestBroker; mocks: Record<P, MockServer> };
  beforeAll(async () => {
    ctx.dir = mkdtempSync(join(tmpdir(), `${dirPrefix}-`));
    ctx.mocks = {} as Record<P, MockServer>;
    for (const name of Object.keys(behaviours) as P[]) ctx.mocks[name] = await startMock(behaviours[name]);
    ctx.broker = await startBroker(configFor(ctx.mocks, extra));
  });
  afterAll(async () => {
    await ctx.broker.close();
    for (const m of Object.values<MockServer>(ctx.mocks)) await m.app.close();
    await dropPrefix(ctx.broker.prefix);
    rmSync(ctx.dir, { recursive: true, force: true });
  });
  return ctx;
}

function expectEachLineOnce(results: ResultLine[], lines: number[]) {
  expect(results.map((r) => r.line).sort((a, b) => a - b)).toEqual(lines);
}

describe('switchyard submit', () => {
  // q answers 400 to everything: jobs routed to it fail at once.
  const ctx = brokerFixture('switchyard-submit', { p: { latencyMs: 5 }, q: { errorRate: 1, errorStatus: 400 } }, { models: { fast: ['p/model-a'], broken: ['q/model-a'] }, tasks: { default: 'fast', other: 'fast' } });

  it('runs a 300-line file: one succeeded result per line, each traceable to its line, exit 0', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'three-hundred.jsonl');
    const out = join(dir, 'three-hundred.out.jsonl');
    writeFileSync(input, jsonl(questions(300)));
    const before = await jobCount(broker);

    const run = await runCli([input, '--out', out, '--url', broker.url, '--task', 'default', '--chunk', '64', '--concurrency', '16']);

    expect(run.stderr).toContain('300 lines: 300 succeeded, 0 failed');
    expect(run.code).toBe(0);
    const results = readResults(out);
    expect(results).toHaveLength(300);
    expectEachLineOnce(results, range(300));
    for (const r of results) {
      expect(r.status).toBe('succeeded');
      expect(r.custom_id).toBe(`c-${r.line}`);
      expect(r.result.object).toBe('chat.completion');
      expect(r.result.choices[0].message.content).toMatch(new RegExp(`question ${r.line}$`));
    }
    expect(new Set(results.map((r) => r.id)).size).toBe(300);
    expect((await jobCount(broker)) - before).toBe(300);
    const state = JSON.parse(readFileSync(`${out}.state.json`, 'utf8'));
    expect(Object.keys(state.chunks).map(Number)).toEqual([1, 65, 129, 193, 257]);
  });

  it('reports a malformed line and writes an error for it, runs the rest, and exits 1 when a job fails', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'mixed.jsonl');
    const out = join(dir, 'mixed.out.jsonl');
    writeFileSync(input, jsonl([chat('first'), '', '{"messages": [', { request: chat('fourth'), priority: 2 }, { request: chat('fifth'), model: 'broken' }]));

    const run = await runCli([input, '--out', out, '--url', broker.url]);

    expect(run.stderr).toContain('line 3 is not valid JSON');
    expect(run.stderr).toContain('4 lines: 2 succeeded, 2 failed');
    expect(run.code).toBe(1);
    const results = readResults(out);
    expectEachLineOnce(results, [1, 3, 4, 5]);
    const byLine = new Map(results.map((r) => [r.line, r]));
    expect(byLine.get(1)!.status).toBe('succeeded');
    expect(byLine.get(4)!.result.choices[0].message.content).toMatch(/fourth$/);
    expect(byLine.get(3)).toMatchObject({ id: null, status: 'failed', result: null, error: { type: 'invalid_input' } });
    expect(byLine.get(5)).toMatchObject({ status: 'failed', result: null });
    expect(byLine.get(5)!.id).toMatch(/^job_/);
    expect(byLine.get(5)!.error).toBeTruthy();
  });

  it.each([
    ['a field the intake schema refuses (priority 99), checked before sending', 'priority', { request: chat('too urgent'), priority: 99 }, /line 3: priority/],
    ['a model the broker cannot route, refused by the bulk endpoint', 'model', { request: chat('nowhere'), model: 'no-such-model' }, /refused .*line 3.*unknown model/],
  ])('refuses %s: exits 1 and creates no job', async (_name, file, bad, message) => {
    const { dir, broker } = ctx;
    const input = join(dir, `refused-${file}.jsonl`);
    const out = `${input}.out`;
    writeFileSync(input, jsonl([chat('one'), chat('two'), bad, chat('four')]));
    const before = await jobCount(broker);

    const run = await runCli([input, '--out', out, '--url', broker.url]);

    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(1);
    expect(await jobCount(broker)).toBe(before);
    expect(readResults(out)).toEqual([]);
  });

  it('refuses to resume against an input that changed (exit 2) and starts over with --restart', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'changing.jsonl');
    const out = join(dir, 'changing.out.jsonl');
    writeFileSync(input, jsonl(questions(3)));
    expect((await runCli([input, '--out', out, '--url', broker.url])).code).toBe(0);
    writeFileSync(input, jsonl(questions(5)));

    const refused = await runCli([input, '--out', out, '--url', broker.url]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('has changed');
    expect(readResults(out)).toHaveLength(3);

    const restarted = await runCli([input, '--out', out, '--url', broker.url, '--restart']);
    expect(restarted.code).toBe(0);
    expectEachLineOnce(readResults(out), range(5));
  });

  it('submits new jobs with --restart, whatever the earlier run used, so a rerun after an outage really runs again', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'outage.jsonl');
    const out = join(dir, 'outage.out.jsonl');
    writeFileSync(input, jsonl(questions(4)));
    // The provider behind "broken" fails every call: the whole run fails.
    const failed = await runCli([input, '--out', out, '--url', broker.url, '--model', 'broken']);
    expect(failed.code).toBe(1);
    const failedIds = readResults(out).map((r) => r.id);
    expect(readResults(out).every((r) => r.status === 'failed')).toBe(true);

    const before = await jobCount(broker);
    const again = await runCli([input, '--out', out, '--url', broker.url, '--restart', '--model', 'fast', '--task', 'other']);
    expect(again.stderr).toContain('4 lines: 4 succeeded, 0 failed');
    expect(again.code).toBe(0);
    const results = readResults(out);
    expectEachLineOnce(results, range(4));
    expect(results.every((r) => r.status === 'succeeded' && !failedIds.includes(r.id))).toBe(true);
    expect((await jobCount(broker)) - before).toBe(4);

    // And once more with the same options as the first run: new jobs again, not the first run's replayed.
    const third = await runCli([input, '--out', out, '--url', broker.url, '--restart', '--model', 'broken']);
    expect(third.code).toBe(1);
    expect(readResults(out).map((r) => r.id).some((id) => failedIds.includes(id))).toBe(false);
  });

  it("routes ordinary chat bodies by their own model, as the Batch API does; --model overrides it", async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'models.jsonl');
    const out = join(dir, 'models.out.jsonl');
    writeFileSync(input, jsonl([{ model: 'fast', ...chat('on fast') }, { model: 'broken', ...chat('on broken') }, { model: 'p/model-a', ...chat('by target') }]));
    const run = await runCli([input, '--out', out, '--url', broker.url]);
    expect(run.code).toBe(1);
    const byLine = new Map(readResults(out).map((r) => [r.line, r]));
    expect(byLine.get(1)!.status).toBe('succeeded');
    expect(byLine.get(2)!.status).toBe('failed');
    expect(byLine.get(3)!.status).toBe('succeeded');
    const overridden = await runCli([input, '--out', join(dir, 'models2.out.jsonl'), '--url', broker.url, '--model', 'fast']);
    expect(overridden.code).toBe(0);
  });

  it("does not hold a corrected command to a run the broker refused before it submitted anything", async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'typo.jsonl');
    const out = join(dir, 'typo.out.jsonl');
    writeFileSync(input, jsonl(questions(3)));
    const typo = await runCli([input, '--out', out, '--url', broker.url, '--task', 'summarise']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/unknown task "summarise"/);
    const fixed = await runCli([input, '--out', out, '--url', broker.url, '--task', 'other']);
    expect(fixed.stderr).toContain('3 lines: 3 succeeded, 0 failed');
    expect(fixed.code).toBe(0);
  });

  it('refuses to append to a results file it has no state for (exit 2)', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'foreign.jsonl');
    const out = join(dir, 'foreign.out.jsonl');
    writeFileSync(input, jsonl(questions(2)));
    writeFileSync(out, '{"someone":"else"}\n');
    const run = await runCli([input, '--out', out, '--url', broker.url]);
    expect(run.code).toBe(2);
    expect(readFileSync(out, 'utf8')).toBe('{"someone":"else"}\n');
  });

  it('draws a progress bar when stderr is a terminal', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'tty.jsonl');
    writeFileSync(input, jsonl(questions(20)));
    const stderr = captureStream(true);

    const code = await runSubmit([input, '--out', join(dir, 'tty.out')], { stderr: stderr.stream, env: { SWITCHYARD_URL: broker.url } });

    expect(code).toBe(0);
    expect(stderr.text()).toContain('20/20 done (0 failed) | submitted 20/20 |');
    expect(stderr.text()).toContain('20 lines: 20 succeeded, 0 failed');
    expect(stderr.text()).not.toContain('progress: ');
  });

  it('answers usage errors with exit 2', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'usage.jsonl');
    writeFileSync(input, jsonl(questions(1)));
    const noOut = await runCli([input, '--url', broker.url]);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toContain('--out');
    expect((await runCli([input, '--out', join(dir, 'u.out'), '--chunk', '20000'])).code).toBe(2);
    expect((await runCli([join(dir, 'missing.jsonl'), '--out', join(dir, 'u.out')])).code).toBe(2);
  });
});

describe('switchyard submit, interrupted and resumed', () => {
  // 200 ms a call, at most 20 in flight (configFor): about 100 jobs a second, slow enough to interrupt.
  const ctx = brokerFixture('switchyard-submit-resume', { p: { latencyMs: 200 } });

  it('survives SIGKILL, a torn last line, an unrecorded chunk and SIGINT: each line submitted once and written once', async () => {
    const { dir, broker, mocks: { p: mock } } = ctx;
    const input = join(dir, 'six-hundred.jsonl');
    const out = join(dir, 'six-hundred.out.jsonl');
    const statePath = `${out}.state.json`;
    writeFileSync(input, jsonl(questions(600)));
    const args = [input, '--out', out, '--url', broker.url, '--chunk', '50', '--concurrency', '16'];
    const before = await jobCount(broker);
    const callsBefore = mock.stats.calls;

    // Run 1: killed outright once results are flowing.
    const first = startCli(args);
    await untilResults(first, out, 100);
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const afterKill = JSON.parse(readFileSync(statePath, 'utf8')) as { chunks: Record<string, string[]> };
    const recorded = Object.keys(afterKill.chunks).map(Number).sort((a, b) => a - b);
    // Only part of the file was submitted, so the next run has chunks to submit as well as jobs to await.
    expect(recorded.length).toBeGreaterThan(1);
    expect(recorded.length).toBeLessThan(12);

    // The two crash windows a kill can hit: after the broker accepted a chunk but before the state
    // recorded it, and halfway through writing a result line.
    const unrecorded = recorded.at(-1)!;
    const unrecordedIds = afterKill.chunks[unrecorded]!;
    delete afterKill.chunks[unrecorded];
    writeFileSync(statePath, JSON.stringify(afterKill));
    appendFileSync(out, '{"line": 599, "id": "job_torn", "stat');

    // Run 2: interrupted with Ctrl-C; it stops cleanly and says how to resume.
    const second = startCli(args);
    const progressed = completeLines(out);
    await untilResults(second, out, progressed + 150);
    second.child.kill('SIGINT');
    const interrupted = await second.exited;
    expect(interrupted.stderr).toContain('run the same command again to resume');
    expect(interrupted.code).toBe(130);
    const afterInterrupt = JSON.parse(readFileSync(statePath, 'utf8')) as { chunks: Record<string, string[]> };
    expect(afterInterrupt.chunks[unrecorded]).toEqual(unrecordedIds);
    expect(readResults(out).length).toBeLessThan(600);

    // Run 3: to the end.
    const third = await runCli(args);
    expect(third.stderr).toContain('600 lines: 600 succeeded, 0 failed');
    expect(third.code).toBe(0);

    const results = readResults(out);
    expect(results).toHaveLength(600);
    expectEachLineOnce(results, range(600));
    for (const r of results) {
      expect(r.status).toBe('succeeded');
      expect(r.custom_id).toBe(`c-${r.line}`);
      expect(r.result.choices[0].message.content).toMatch(new RegExp(`question ${r.line}$`));
    }
    expect(new Set(results.map((r) => r.id)).size).toBe(600);
    expect((await jobCount(broker)) - before).toBe(600);
    expect(mock.stats.calls - callsBefore).toBe(600);
  });
});

describe('switchyard submit progress without a terminal', () => {
  const ctx = brokerFixture('switchyard-submit-progress', { p: { latencyMs: 200 } });

  it('prints a plain progress line at most every 2 s, then the summary', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'plain.jsonl');
    writeFileSync(input, jsonl(questions(300)));
    const stderr = captureStream(false);
    const startedAt = Date.now();

    // About 3 s of work at 100 jobs a second.
    const code = await runSubmit([input, '--out', join(dir, 'plain.out'), '--chunk', '100'], { stderr: stderr.stream, env: { SWITCHYARD_URL: broker.url } });

    const elapsed = Date.now() - startedAt;
    expect(code).toBe(0);
    const lines = stderr.text().split('\n').filter(Boolean);
    const progress = lines.filter((l) => l.startsWith('progress: '));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(Math.floor(elapsed / 2000));
    for (const line of progress) expect(line).toMatch(/^progress: \d+\/300 done \(0 failed\), submitted \d+\/300, \d+\.\d jobs\/s, ETA (\d+s|--)$/);
    expect(lines.at(-1)).toMatch(/^300 lines: 300 succeeded, 0 failed, in \d+s$/);
    expect(stderr.text()).not.toContain('\x1b[');
  });
});

describe('switchyard submit with API keys', () => {
  const key = 'sk-switchyard-test-key-0123456789';
  const ctx = brokerFixture('switchyard-submit-auth', { p: {} }, { auth: { api_keys: [{ name: 't', key }] } });

  it('sends the key from --api-key or SWITCHYARD_API_KEY, never prints it, and stops on a 401', async () => {
    const { dir, broker } = ctx;
    const input = join(dir, 'auth.jsonl');
    writeFileSync(input, jsonl(questions(20)));

    const flagged = await runCli([input, '--out', join(dir, 'flag.out'), '--url', broker.url, '--api-key', key]);
    expect(flagged.code).toBe(0);
    expectEachLineOnce(readResults(join(dir, 'flag.out')), range(20));
    const fromEnv = await runCli([input, '--out', join(dir, 'env.out')], { SWITCHYARD_URL: broker.url, SWITCHYARD_API_KEY: key });
    expect(fromEnv.code).toBe(0);
    expectEachLineOnce(readResults(join(dir, 'env.out')), range(20));
    // Two runs (two results files), so two sets of jobs: a run is named by its own run id.
    expect(await jobCount(broker, 't')).toBe(40);

    const anonymous = await runCli([input, '--out', join(dir, 'anon.out'), '--url', broker.url]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain('missing API key');
    expect(readResults(join(dir, 'anon.out'))).toEqual([]);
    const wrong = await runCli([input, '--out', join(dir, 'wrong.out'), '--url', broker.url, '--api-key', 'sk-not-the-right-key-at-all']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('invalid API key');
    expect(await jobCount(broker, 't')).toBe(40);
    for (const run of [flagged, fromEnv, anonymous, wrong]) {
      expect(run.stdout + run.stderr).not.toContain(key);
      // Default --concurrency (64) requests listen on one abort signal; Node must not warn of a leak.
      expect(run.stderr).not.toContain('Warning');
    }
  });
});
