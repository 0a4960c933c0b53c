import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedRedis } from '../src/redis/embedded.js';
import { chat } from './support/broker.js';
import { createTestHost, type TestHost } from './support/netns.js';
import { type BrokerProcess, spawnBroker, watchBroker, writeConfig } from './support/process.js';

const exec = promisify(execFile);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(REPO, 'src/cli/main.ts');
const TSX = join(REPO, 'node_modules/tsx/dist/loader.mjs');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/**
 * redis-server processes serving `dir`, from /proc, as an operator would find them: redis-server
 * rewrites its command line, but it works in its data directory.
 */
const redisServersOn = (dir: string) =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'redis-server' && readlinkSync(`/proc/${p}/cwd`) === dir;
      } catch {
        return false;
      }
    })
    .map(Number);

/** A zero-config `switchyard start` as a terminal runs it: the leader of its own process group. */
interface Terminal extends BrokerProcess {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** Ctrl-C: SIGINT to the whole foreground process group, as the terminal sends it. */
  ctrlC(): void;
}

function startInTerminal(host: TestHost, cwd: string): Terminal {
  // Inside the namespace nothing listens on 127.0.0.1:6379, so npm start's zero-config path
  // starts its embedded redis-server, as on a fresh machine.
  const child = spawn('ip', ['netns', 'exec', host.name, process.execPath, '--import', TSX, MAIN, 'start'], {
    cwd,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { ...watchBroker(child), exited, ctrlC: () => process.kill(-child.pid!, 'SIGINT') };
}

describe('npm start with an embedded Redis, as a terminal drives it', () => {
  let host: TestHost;
  let cwd: string;
  const terminals: Terminal[] = [];
  /** curl inside the namespace, where the zero-config API listens on loopback. */
  const curl = async (args: string[]) => (await exec('ip', ['netns', 'exec', host.name, 'curl', '-s', '--max-time', '10', ...args])).stdout;
  const api = async (method: string, path: string, body?: unknown) =>
    JSON.parse(await curl(['-X', method, `http://127.0.0.1:8080${path}`, ...(body === undefined ? [] : ['-H', 'content-type: application/json', '-d', JSON.stringify(body)])])) as Record<string, any>;

  beforeAll(async () => {
    host = await createTestHost();
  });
  afterEach(() => {
    for (const t of terminals.splice(0)) {
      if (t.child.exitCode !== null || t.child.signalCode !== null) continue;
      try {
        process.kill(-t.child.pid!, 'SIGKILL');
      } catch {
        // the group has gone already
      }
    }
  });
  afterAll(async () => {
    await host?.close();
    if (cwd) {
      for (const pid of redisServersOn(join(cwd, '.switchyard/redis'))) process.kill(pid, 'SIGKILL');
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('Ctrl-C while a job runs: the job finishes, the broker exits promptly, and Redis is stopped after it', { timeout: 90_000 }, async () => {
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-terminal-'));
    const t = startInTerminal(host, cwd);
    terminals.push(t);
    await t.waitForLog('API listening', 30_000);
    const mockUrl = String((await t.waitForLog('no provider keys configured: using the built-in mock provider')).url).replace(/\/v1$/, '');
    const dir = join(cwd, '.switchyard/redis');
    const [redisPid] = redisServersOn(dir);
    expect(redisPid).toBeGreaterThan(0);

    await curl(['-X', 'PUT', `${mockUrl}/_mock/behaviour`, '-H', 'content-type: application/json', '-d', '{"latencyMs":3000}']);
    const job = await api('POST', '/v1/jobs', { request: chat('finish me') });
    for (let i = 0; i < 100 && (await api('GET', `/v1/jobs/${job.id}`)).status !== 'running'; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await api('GET', `/v1/jobs/${job.id}`)).status).toBe('running');

    const pressed = Date.now();
    t.ctrlC();
    const { code, at } = await t.exited;
    expect(code).toBe(0);
    // The 3 s call had its grace and finished; the rest of shutdown is bounded, not a hang.
    expect(at - pressed).toBeLessThan(20_000);
    // Redis was in a process group of its own: Ctrl-C did not reach it, the broker stopped it last.
    expect(t.lines.filter((l) => l.msg === 'redis connection error').length).toBe(0);
    await expect.poll(() => alive(redisPid!), { timeout: 15_000 }).toBe(false);
    expect(existsSync(join(dir, 'embedded.json'))).toBe(false);

    // The job's end was written before Redis went: a new start finds it succeeded.
    const again = startInTerminal(host, cwd);
    terminals.push(again);
    await again.waitForLog('API listening');
    expect((await api('GET', `/v1/jobs/${job.id}`)).status).toBe('succeeded');
    again.ctrlC();
    expect((await again.exited).code).toBe(0);
  });

  it('after a SIGKILL, the next start reuses the embedded Redis left running instead of starting a second one', { timeout: 90_000 }, async () => {
    cwd ??= mkdtempSync(join(tmpdir(), 'switchyard-terminal-'));
    const dir = join(cwd, '.switchyard/redis');
    const first = startInTerminal(host, cwd);
    terminals.push(first);
    await first.waitForLog('API listening');
    const [redisPid] = redisServersOn(dir);
    const job = await api('POST', '/v1/jobs', { request: chat('survive a kill') });
    await api('GET', `/v1/jobs/${job.id}?wait=10`);

    process.kill(first.child.pid!, 'SIGKILL');
    await first.exited;
    expect(alive(redisPid!)).toBe(true);

    const second = startInTerminal(host, cwd);
    terminals.push(second);
    const reused = await second.waitForLog('reusing the embedded redis-server an earlier broker left running (it was not shut down cleanly)');
    expect(reused.pid).toBe(redisPid);
    await second.waitForLog('API listening');
    expect(redisServersOn(dir)).toEqual([redisPid]);
    expect((await api('GET', `/v1/jobs/${job.id}`)).status).toBe('succeeded');

    second.ctrlC();
    expect((await second.exited).code).toBe(0);
    await expect.poll(() => alive(redisPid!), { timeout: 15_000 }).toBe(false);
  });
});

/* With Redis gone or frozen, nothing waits on it without a bound. */
describe('the API and shutdown with Redis unreachable', () => {
  let redis: EmbeddedRedis | undefined;
  afterEach(async () => {
    if (redis) {
      try {
        process.kill(redis.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await redis.stop();
    }
    redis = undefined;
  });

  async function brokerOn(): Promise<{ broker: ReturnType<typeof spawnBroker>; url: string }> {
    redis = await EmbeddedRedis.start({ dir: mkdtempSync(join(tmpdir(), 'switchyard-down-')), persist: false });
    const file = writeConfig({
      redis: { url: redis.url, prefix: '{sy-down}' },
      server: { port: 0 },
      providers: { mock: { type: 'mock' } },
      models: { fast: ['mock/mock-fast'] },
      tasks: { default: 'fast' },
      workers: { shutdown_grace_ms: 1000 },
    });
    const broker = spawnBroker('start', { SWITCHYARD_CONFIG: file, PORT: '0' });
    const url = String((await broker.waitForLog('API listening')).url);
    return { broker, url };
  }
  const timed = async (url: string, init?: RequestInit) => {
    const t0 = Date.now();
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text(), ms: Date.now() - t0 };
  };
  const submit = (url: string) => timed(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chat() }) });

  it.each([
    ['stopped', 'SIGTERM'],
    ['frozen (SIGSTOP: the socket stays open, nothing answers)', 'SIGSTOP'],
  ] as const)('Redis %s: /readyz, submits and reads answer 503 within seconds, and SIGTERM completes', { timeout: 90_000 }, async (_what, signal) => {
    const { broker, url } = await brokerOn();
    const ok = await submit(url);
    expect(ok.status).toBe(202);
    const id = JSON.parse(ok.body).id as string;

    if (signal === 'SIGTERM') await redis!.stop();
    else process.kill(redis!.pid, 'SIGSTOP');

    const ready = await timed(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.ms).toBeLessThan(2500);
    for (const res of [await submit(url), await timed(`${url}/v1/jobs/${id}`)]) {
      expect(res.status).toBe(503);
      expect(res.retryAfter).toBe('1');
      expect(JSON.parse(res.body).error).toMatchObject({ type: 'service_unavailable', code: 'redis_unavailable' });
      expect(res.ms).toBeLessThan(3500);
    }
    expect((await timed(`${url}/healthz`)).status).toBe(200);

    const t0 = Date.now();
    await broker.stop('SIGTERM');
    // Grace 1 s plus bounded steps: it ends, where before it waited on Redis for ever.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(broker.child.exitCode === 0 || broker.child.exitCode === 1).toBe(true);
  });
});
