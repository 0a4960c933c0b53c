import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const RECEIVER = fileURLToPath(new URL('./netns-receiver.ts', import.meta.url));
const NEEDS = 'These tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2 (`ip`) to put a receiver on a non-loopback address';

/**
 * A host on a public address, reachable from this process: a network namespace joined to this one
 * by a veth pair, each end holding one address of a random /30 inside 11.0.0.0/8. Webhook tests
 * use it to reach a receiver the SSRF guard has no reason to refuse, without relaxing the guard.
 */
export interface TestHost {
  /** The namespace's name (`ip netns exec <name> ...`). */
  readonly name: string;
  /** The address inside the namespace, where its servers listen. */
  readonly address: string;
  /** The address of this side of the link, from which connections reach the namespace. */
  readonly hostAddress: string;
  /** Runs a command inside the namespace; it is killed by close() if still running. */
  exec(cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
  /** Kills what exec started, then removes the link and the namespace. Safe to call twice. */
  close(): Promise<void>;
}

/** One request the namespace receiver saw, as it printed it. */
export interface NetnsDelivery {
  at: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface NetnsReceiver {
  /** `http://<namespace address>:<port>/hooks`. */
  readonly url: string;
  readonly port: number;
  /** Every request so far, in order of arrival. */
  readonly received: NetnsDelivery[];
  /** Resolves with the first request (already seen or still to come) that matches. */
  waitFor(match: (d: NetnsDelivery) => boolean, timeoutMs?: number): Promise<NetnsDelivery>;
  stop(): Promise<void>;
}

function ipBinary(): string {
  const found = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p));
  if (!found) throw new Error(`cannot set up a test network namespace: no \`ip\` binary (install iproute2). ${NEEDS}.`);
  return found;
}

async function ip(bin: string, args: string[]): Promise<void> {
  try {
    await run(bin, args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot set up a test network namespace: \`ip ${args.join(' ')}\` failed: ${(e.stderr || e.message).trim()}. ${NEEDS}.`);
  }
}

/** Runs ip and ignores failure: for removing what may not exist. */
async function ipQuiet(bin: string, args: string[]): Promise<void> {
  await run(bin, args).catch(() => undefined);
}

/** A /30 in 11.0.0.0/8 that no interface here already uses, so concurrent runs do not collide. */
async function freeSlash30(bin: string): Promise<[string, string]> {
  const { stdout } = await run(bin, ['-4', '-o', 'addr', 'show']);
  const taken = new Set([...stdout.matchAll(/inet (11\.\d+\.\d+)\.(\d+)\//g)].map((m) => `${m[1]}.${Math.floor(Number(m[2]) / 4)}`));
  for (;;) {
    const [b, c, d] = [randomInt(256), randomInt(256), randomInt(64) * 4];
    if (taken.has(`11.${b}.${c}.${d / 4}`)) continue;
    return [`11.${b}.${c}.${d + 1}`, `11.${b}.${c}.${d + 2}`];
  }
}

export async function createTestHost(): Promise<TestHost> {
  const bin = ipBinary();
  // Names from the pid and a random suffix; an interface name is at most 15 characters.
  const tag = `sy${process.pid}${randomBytes(2).toString('hex')}`;
  const name = `${tag}n`;
  const hostVeth = `${tag}h`;
  const nsVeth = `${tag}p`;
  // A leftover of the same name (a run killed before its teardown) would make every step below fail.
  await ipQuiet(bin, ['link', 'del', hostVeth]);
  await ipQuiet(bin, ['netns', 'del', name]);

  const children = new Set<ChildProcess>();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all([...children].map((child) => stopChild(child)));
    // Deleting one end of a veth pair deletes the other; the namespace goes after.
    await ipQuiet(bin, ['link', 'del', hostVeth]);
    await ipQuiet(bin, ['netns', 'del', name]);
  };

  try {
    const [hostAddress, address] = await freeSlash30(bin);
    await ip(bin, ['netns', 'add', name]);
    await ip(bin, ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nsVeth]);
    await ip(bin, ['link', 'set', nsVeth, 'netns', name]);
    await ip(bin, ['addr', 'add', `${hostAddress}/30`, 'dev', hostVeth]);
    await ip(bin, ['link', 'set', hostVeth, 'up']);
    await ip(bin, ['-n', name, 'addr', 'add', `${address}/30`, 'dev', nsVeth]);
    await ip(bin, ['-n', name, 'link', 'set', nsVeth, 'up']);
    await ip(bin, ['-n', name, 'link', 'set', 'lo', 'up']);
    return {
      name,
      address,
      hostAddress,
      exec(cmd, args = [], opts = {}) {
        if (closed) throw new Error(`test host ${name} is closed`);
        const child = spawn(bin, ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
        children.add(child);
        child.once('exit', () => children.delete(child));
        return child;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Starts netns-receiver.ts inside the host's namespace, on its address, and collects what it prints. */
export async function startReceiver(host: TestHost): Promise<NetnsReceiver> {
  const child = host.exec(process.execPath, ['--import', 'tsx', RECEIVER, host.address, '0'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const received: NetnsDelivery[] = [];
  const waiters: { match: (d: NetnsDelivery) => boolean; resolve: (d: NetnsDelivery) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));

  const port = await new Promise<number>((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`the receiver in ${host.name} did not start within 15 s; stderr: ${stderr}`)), 15_000);
    child.once('exit', (code) => reject(new Error(`the receiver in ${host.name} exited (${code}) before listening; stderr: ${stderr}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffer.slice(0, nl)) as { listening?: { port: number } } & NetnsDelivery;
        buffer = buffer.slice(nl + 1);
        if (line.listening) {
          clearTimeout(timer);
          resolve(line.listening.port);
          continue;
        }
        received.push(line);
        for (const w of waiters.filter((w) => w.match(line))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
  });

  return {
    url: `http://${host.address}:${port}/hooks`,
    port,
    received,
    waitFor(match, timeoutMs = 20_000) {
      const seen = received.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching request reached the receiver in ${host.name} within ${timeoutMs} ms (it saw ${received.length})`)), timeoutMs);
        waiters.push({ match, resolve: (d) => (clearTimeout(timer), resolve(d)) });
      });
    },
    stop: () => stopChild(child),
  };
}
