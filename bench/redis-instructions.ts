/**
 * Redis's work a job counted in instructions rather than seconds: a redis-server of its own runs
 * under valgrind's callgrind, which counts what it executes. The same code and inputs count the
 * same to within about half a percent however busy the machine is, where the CPU rows move by a
 * third between runs here, so a change of a few percent in what Redis does a job shows in one run.
 * Under valgrind Redis runs some fifty times slower, so commands reach it in larger batches than at
 * full speed, and the kernel's side of its sockets is not counted: the count is of the work the
 * commands ask for (the scripts above all), the part a change to them moves.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForRedis } from '../src/redis/embedded.js';

/** A scenario puts `n` jobs through the Redis at `url`, from submission to result, calling `queued` once all are queued and before any runs. */
export type Scenario = (url: string, n: number, queued: () => void) => Promise<unknown>;

/** Instructions a job: from submission to result, and the part of it spent queueing. */
export interface Counted {
  total: number;
  queueing: number;
}

/** Jobs each scenario runs first, uncounted: the scripts are loaded and compiled once, not per job. */
const WARM_UP_JOBS = 50;

/** Instructions Redis ran a job for each scenario, or why they could not be counted. */
export async function redisInstructions<K extends string>(scenarios: Record<K, Scenario>, n: number): Promise<Record<K, Counted> | string> {
  if (spawnSync('valgrind', ['--version']).status !== 0) return 'valgrind is not installed';
  const dir = mkdtempSync(join(tmpdir(), 'sy-callgrind-'));
  const port = await freePort();
  const server = spawn(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(dir, 'redis')}`, 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  try {
    await waitForRedis(url, 60_000);
    const counts = {} as Record<K, Counted>;
    for (const [name, scenario] of Object.entries(scenarios) as [K, Scenario][]) {
      await scenario(url, WARM_UP_JOBS, () => {});
      const [queueing, running] = await counted(server, dir, (mark) => scenario(url, n, mark));
      counts[name] = { total: (queueing + running) / n, queueing: queueing / n };
    }
    return counts;
  } finally {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What Redis executed while `fn` ran, before and after `fn` marks: counting on and zeroed, a dump
 * at the mark and one at the end (each dump holds what ran since the one before), then off again.
 */
async function counted(server: ChildProcess, dir: string, fn: (mark: () => void) => Promise<unknown>): Promise<[number, number]> {
  control(server, '-i', 'on');
  control(server, '-z');
  let before: number | undefined;
  await fn(() => {
    control(server, '-d');
    before = lastDump(dir);
  });
  control(server, '-d');
  control(server, '-i', 'off');
  if (before === undefined) throw new Error('a scenario that never said its jobs were queued');
  return [before, lastDump(dir)];
}

/** The instructions of the newest dump: each is a file of its own (redis.1, redis.2, …). */
function lastDump(dir: string): number {
  const dumps = readdirSync(dir).filter((f) => /^redis\.\d+$/.test(f)).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
  const text = readFileSync(join(dir, dumps.at(-1)!), 'utf8');
  const summary = /^summary: (\d+)$/m.exec(text);
  if (!summary) throw new Error('a callgrind dump without its summary line');
  return Number(summary[1]);
}

function control(server: ChildProcess, ...args: string[]): void {
  const done = spawnSync('callgrind_control', [...args, String(server.pid)], { encoding: 'utf8' });
  if (done.status !== 0) throw new Error(`callgrind_control ${args.join(' ')} failed: ${done.stderr || done.stdout}`);
}

async function stop(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (server.exitCode === null) server.kill('SIGKILL');
}
