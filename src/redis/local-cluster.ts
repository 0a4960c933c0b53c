import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';

const run = promisify(execFile);

const free = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });

/** A port whose cluster bus port (+10000) is free as well. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if (!taken.has(port) && (await free(port)) && (await free(port + 10_000))) return port;
  }
}

/**
 * A Redis Cluster of `masters` nodes on this machine, from the redis-server binary (no replicas,
 * nothing on disk): what the sharded layout (redis.shards) is tried and measured on.
 */
export class LocalCluster {
  private constructor(
    readonly ports: number[],
    private readonly children: ChildProcess[],
    private readonly dir: string,
  ) {}

  /** Its nodes, for `redis.cluster`. */
  get nodes(): string[] {
    return this.ports.map((p) => `redis://127.0.0.1:${p}`);
  }

  static async start(masters = 3): Promise<LocalCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'sy-cluster-'));
    const ports: number[] = [];
    for (let i = 0; i < masters; i++) ports.push(await clusterPort(new Set(ports)));
    const children = ports.map((port) =>
      spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '5000', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }),
    );
    const cluster = new LocalCluster(ports, children, dir);
    try {
      for (const port of ports) await cluster.waitFor(port, async (r) => (await r.ping()) === 'PONG');
      await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
      for (const port of ports) await cluster.waitFor(port, async (r) => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /**
   * Moves the (still empty) slot of `key` to master `index`, as an operator places a hot slot with
   * `redis-cli --cluster reshard`: every master is told the slot's new owner.
   */
  async place(key: string, index: number): Promise<void> {
    const slot = calculateSlot(key);
    const target = this.node(this.ports[index]!);
    try {
      const id = String(await target.call('CLUSTER', 'MYID'));
      for (const port of this.ports) {
        const node = this.node(port);
        try {
          await node.call('CLUSTER', 'SETSLOT', slot, 'NODE', id);
        } finally {
          node.disconnect();
        }
      }
      for (const port of this.ports) await this.waitFor(port, async (r) => String(await r.call('CLUSTER', 'INFO')).includes('cluster_state:ok'));
    } finally {
      target.disconnect();
    }
  }

  /** A plain client of one node, for its own INFO. */
  node(port: number): Redis {
    return new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 3 });
  }

  private async waitFor(port: number, ready: (r: Redis) => Promise<boolean>): Promise<void> {
    const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: () => 50, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    try {
      const until = Date.now() + 15_000;
      for (;;) {
        if (await ready(redis).catch(() => false)) return;
        if (Date.now() > until) throw new Error(`redis-server on ${port} not ready`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      redis.disconnect();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
