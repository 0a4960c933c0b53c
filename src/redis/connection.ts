import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import { coalesceWrites } from './coalesced-writes.js';
import { EmbeddedRedis, ping } from './embedded.js';

const LOCAL_REDIS = 'redis://127.0.0.1:6379';

export interface ResolvedRedis {
  url: string;
  embedded?: EmbeddedRedis;
}

/** Configured URL if any, else a Redis on the usual local port, else an embedded redis-server. */
export async function resolveRedis(
  configured: string | undefined,
  log: Logger,
  opts: { localUrl?: string; embeddedDir?: string } = {},
): Promise<ResolvedRedis> {
  if (configured) return { url: configured };
  const local = opts.localUrl ?? LOCAL_REDIS;
  if (await ping(local)) {
    log.info({ redis: local }, 'using the local Redis');
    return { url: local };
  }
  const embedded = await EmbeddedRedis.start(opts.embeddedDir ? { dir: opts.embeddedDir } : {});
  if (embedded.reused) log.warn({ redis: embedded.url, pid: embedded.pid }, 'reusing the embedded redis-server an earlier broker left running (it was not shut down cleanly)');
  else log.info({ redis: embedded.url, pid: embedded.pid }, 'no Redis answered; started an embedded redis-server (AOF on, noeviction)');
  return { url: embedded.url, embedded };
}

/**
 * A client for BullMQ and our scripts. Workers block on Redis, so per BullMQ's rules commands
 * never give up retrying (`maxRetriesPerRequest: null`). The commands of one event-loop turn go out
 * in one write (coalesceWrites), not through ioredis's auto-pipelining, which costs more than it saves.
 */
export function createRedis(url: string, extra: Omit<RedisOptions, 'enableAutoPipelining'> = {}, cluster = false): Redis {
  if (!cluster) return coalesceWrites(new Redis(url, { maxRetriesPerRequest: null, ...extra, enableAutoPipelining: false }));
  return createCluster(url, extra);
}

/**
 * A Redis Cluster client from `redis://[user:password@]host:port,host:port,...` (seed nodes). It
 * speaks the same commands as a single client, routing each by its key's slot, so it stands in for
 * one here; what must not span slots (a script, a pipeline) is kept to one by the key layout and by
 * src/redis/batch.ts.
 */
function createCluster(url: string, extra: RedisOptions): Redis {
  const parsed = /^(rediss?):\/\/(?:([^@]*)@)?(.+)$/.exec(url);
  if (!parsed) throw new Error(`not a redis:// URL: ${url}`);
  const [, scheme, auth, hosts] = parsed;
  const [username, password] = auth?.includes(':') ? auth.split(':').map(decodeURIComponent) : [];
  const seeds = hosts!.split(',').map((h) => {
    const u = new URL(`redis://${h}`);
    return { host: u.hostname, port: Number(u.port || 6379) };
  });
  const client = new Cluster(seeds, {
    enableAutoPipelining: false,
    redisOptions: {
      maxRetriesPerRequest: null,
      ...extra,
      ...(username && { username }),
      ...(password && { password }),
      ...(scheme === 'rediss' && { tls: {} }),
    },
  });
  // Each node has a connection of its own; the seeds' were made inside the constructor.
  for (const node of client.nodes('all')) coalesceWrites(node);
  client.on('+node', (node: Redis) => coalesceWrites(node));
  return client as unknown as Redis;
}

/** While Redis stays unreachable, one line this often rather than one per reconnection attempt. */
const UNREACHABLE_LOG_EVERY_MS = 10_000;

/**
 * Logs a connection's trouble the way an operator can read it: the first error at once, then a
 * line every few seconds with how many followed, and one line when it is back.
 */
export function watchConnection(redis: Redis, name: string, log: Logger): Redis {
  let since = 0;
  let errors = 0;
  let lastLog = 0;
  redis.on('error', (err: Error) => {
    errors++;
    const now = Date.now();
    if (since === 0) since = now;
    if (now - lastLog < UNREACHABLE_LOG_EVERY_MS) return;
    lastLog = now;
    log.warn({ connection: name, err: err.message, errors, down_for_ms: now - since }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (since === 0) return;
    log.info({ connection: name, errors, down_for_ms: Date.now() - since }, 'redis connection restored');
    since = 0;
    errors = 0;
    lastLog = 0;
  });
  return redis;
}

/** Redis must never evict queue or job keys; say so loudly when it might. */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    if (policy && policy !== 'noeviction') {
      log.warn({ policy }, 'Redis maxmemory-policy is not noeviction: under memory pressure queued jobs can be lost');
    }
  } catch {
    // Managed Redis services often disable CONFIG; nothing to check then.
  }
}
