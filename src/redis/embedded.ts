import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** What a running embedded server leaves in its directory, so the next start can find it. */
interface Owner {
  pid: number;
  port: number;
}

const OWNER_FILE = 'embedded.json';
const LOG_FILE = 'redis.log';
/** How long stop() waits for redis-server to write its AOF and exit before it is killed. */
const STOP_GRACE_MS = 10_000;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * A `redis-server` child process: the zero-setup fallback when no Redis answers.
 *
 * It runs in a process group of its own, so the Ctrl-C a terminal sends to the broker's group does
 * not reach it: the broker stops it last, after its own shutdown has written what it had to. Its
 * pid and port are kept in its data directory; a broker that was SIGKILLed leaves it running, and
 * the next start reuses it rather than start a second server on the same AOF files.
 */
export class EmbeddedRedis {
  private constructor(
    readonly pid: number,
    readonly url: string,
    private readonly dir: string,
    /** True when this process found the server already running and took it over. */
    readonly reused: boolean,
  ) {}

  /** Starts redis-server with AOF on (jobs survive a restart) and `noeviction` (queues must never lose keys). */
  static async start(opts: { dir?: string; port?: number; persist?: boolean } = {}): Promise<EmbeddedRedis> {
    const dir = resolve(opts.dir ?? '.switchyard/redis');
    mkdirSync(dir, { recursive: true });
    const found = await EmbeddedRedis.adopt(dir);
    if (found) return found;

    const port = opts.port ?? (await freePort());
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--maxmemory-policy', 'noeviction', '--logfile', join(dir, LOG_FILE)];
    args.push(...(opts.persist === false ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'everysec']));
    // Detached: a group of its own, out of reach of the terminal's Ctrl-C; no pipes left unread.
    const child = spawn('redis-server', args, { stdio: 'ignore', detached: true });
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (err) => reject(new Error(`could not start redis-server (${(err as NodeJS.ErrnoException).code}); install Redis or set REDIS_URL`))),
    );
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`redis-server exited at start-up (code ${code}); see ${join(dir, LOG_FILE)}:\n${tail(join(dir, LOG_FILE))}`))),
    );
    const url = `redis://127.0.0.1:${port}`;
    await Promise.race([spawnError, exited, waitForRedis(url, 10_000)]);
    child.unref();
    writeFileSync(join(dir, OWNER_FILE), JSON.stringify({ pid: child.pid!, port } satisfies Owner));
    return new EmbeddedRedis(child.pid!, url, dir, false);
  }

  /**
   * The server a previous broker left running on this directory, if it still answers and is
   * serving this directory; a recorded server that is alive but not answering is refused, since
   * starting a second one on the same AOF files would corrupt them.
   */
  private static async adopt(dir: string): Promise<EmbeddedRedis | null> {
    const file = join(dir, OWNER_FILE);
    if (!existsSync(file)) return null;
    let owner: Owner;
    try {
      owner = JSON.parse(readFileSync(file, 'utf8')) as Owner;
    } catch {
      rmSync(file, { force: true });
      return null;
    }
    if (!alive(owner.pid)) {
      rmSync(file, { force: true });
      return null;
    }
    const url = `redis://127.0.0.1:${owner.port}`;
    if ((await ping(url, 1000)) && (await servesDir(url, dir))) return new EmbeddedRedis(owner.pid, url, dir, true);
    throw new Error(
      `a redis-server (pid ${owner.pid}) recorded in ${file} is still running but does not answer on port ${owner.port} for ${dir}; ` +
        'stop it (or set REDIS_URL) before starting the broker, so two servers never share one AOF directory',
    );
  }

  /** Asks redis-server to finish (it writes its AOF), waits for it to exit, and kills it if it will not. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!alive(this.pid)) return this.forget();
    process.kill(this.pid, signal);
    const until = Date.now() + STOP_GRACE_MS;
    while (alive(this.pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (alive(this.pid)) process.kill(this.pid, 'SIGKILL');
    while (alive(this.pid)) await new Promise((r) => setTimeout(r, 20));
    this.forget();
  }

  private forget(): void {
    rmSync(join(this.dir, OWNER_FILE), { force: true });
  }
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

async function servesDir(url: string, dir: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    const [, served] = (await client.config('GET', 'dir')) as [string, string];
    return resolve(served) === dir;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export async function ping(url: string, timeoutMs = 500): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

export async function waitForRedis(url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await ping(url, 200)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Redis at ${url} did not answer within ${timeoutMs} ms`);
}
