import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobsOptions, Queue } from 'bullmq';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { NODE_FLAGS } from '../src/cli/node-flags.js';

/** Shared pieces of the benchmark: child processes, a closed-loop HTTP load, percentiles. */

export const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;

export interface Child {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Polls `url` until it answers 200. */
export async function waitHttp(url: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} did not answer in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `switchyard <args>` and resolves once stdout shows `ready`, or once `ready` (a URL) answers. */
export function spawnCli(args: string[], ready: RegExp | string, env: Record<string, string> = {}): Promise<Child> {
  return spawnNode(CLI, args, ready, env);
}

/** Runs a Node script with the broker's own node flags, as spawnCli does the CLI. */
export async function spawnNode(script: string, args: string[], ready: RegExp | string, env: Record<string, string> = {}): Promise<Child> {
  const proc = spawn(process.execPath, [...NODE_FLAGS, script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (typeof ready === 'string') {
    proc.stdout!.resume();
    proc.stderr!.resume();
    await waitHttp(ready);
  } else await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${ready}: ${out}${err}`)), 20_000);
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  // Keep draining output so the child never blocks on a full pipe.
  proc.stdout!.resume();
  proc.stderr!.resume();

  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function writeYaml(config: unknown): string {
  const path = join(tmpdir(), `switchyard-bench-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, stringify(config));
  return path;
}

/** Peak resident set size of a process so far, from the kernel (VmHWM), in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** A process's user + system CPU so far, from the kernel, in µs (clock ticks are 10 ms here: read it over a run, not a request). */
export function cpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** `total` POSTs of `body(i)` with `concurrency` in flight; returns requests per second. */
/** Runs `fn(i)` for i from 0 to `total`, `concurrency` at a time, each caller taking the next i as it finishes; returns the rate per second. */
export async function closedLoop(total: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await fn(next++);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

export async function closedLoopPost(
  origin: string,
  path: string,
  total: number,
  concurrency: number,
  body: (i: number) => unknown,
  expectStatus = 202,
): Promise<{ perSecond: number; ids: string[] }> {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1 });
  const ids: string[] = new Array(total);
  const perSecond = await closedLoop(total, concurrency, async (i) => {
    const res = await pool.request({ path, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(i)) });
    const text = await res.body.text();
    if (res.statusCode !== expectStatus) throw new Error(`POST ${path} answered ${res.statusCode}: ${text}`);
    ids[i] = (JSON.parse(text) as { id: string }).id;
  });
  await pool.close();
  return { perSecond, ids };
}

/** Calls `fn(i)` `total` times at a steady `perSecond`, without waiting for each to finish first. */
export async function paced(total: number, perSecond: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(fn(i));
  }
  await Promise.all(pending);
}

export function percentiles(values: number[]): { p50: number; p95: number; p99: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

export const chatBody = (i: number) => ({ messages: [{ role: 'user' as const, content: `benchmark job ${i}: say something short` }] });

/** Adds `n` jobs to `queue` with addBulk, 1,000 a call; job i is `job(i)`. */
export async function addInBulk(queue: Queue, n: number, job: (i: number) => { name: string; data: unknown; opts?: JobsOptions }): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    await queue.addBulk(Array.from({ length: Math.min(1000, n - i) }, (_, k) => job(i + k)));
  }
}
