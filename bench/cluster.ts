/**
 * The sharded layout (redis.shards) on a local three-master Redis Cluster: 48 tenants' jobs over
 * three providers, queued through the intake and drained by one worker process, and each master's
 * share of the Redis work per job, from its own INFO. On two cores the masters share the CPU, so
 * aggregate jobs/s cannot show the gain; the split shows where the ceiling goes: one Redis tops out
 * at 1 s divided by its CPU per job, and each master now carries only its part of that.
 * The same mix on the single Redis, unsharded, is the baseline.
 */
import type { Logger } from '../src/log.js';
import { parseConfig } from '../src/config/load.js';
import { LocalCluster } from '../src/redis/local-cluster.js';
import { queuePrefix } from '../src/queues/provider-queues.js';
import { startRuntime } from '../src/runtime.js';
import { drain, fill, type Mix, terminalCounter } from './drain.js';
import { perJob, type RedisWork, redisWork } from './redis-work.js';

const PROVIDERS = ['pa', 'pb', 'pc'];
const MIX: Mix = { tenants: Array.from({ length: 48 }, (_, i) => `tenant-${i}`), models: PROVIDERS.map((p) => `to-${p}`) };
const SHARDS = 12;

function configOf(redis: { url: string } | { cluster: string[] }, prefix: string, mockBaseUrl: string, sharded: boolean) {
  return parseConfig(
    {
      redis: { ...redis, prefix, ...(sharded && { shards: SHARDS }) },
      providers: Object.fromEntries(PROVIDERS.map((p) => [p, { type: 'openai', base_url: mockBaseUrl, max_in_flight: 50 }])),
      models: Object.fromEntries(PROVIDERS.map((p) => [`to-${p}`, [`${p}/bench-model`]])),
      tasks: { default: 'to-pa' },
    },
    {},
    'bench',
  );
}

export interface ClusterSplit {
  jobs: number;
  /** Per master, per job. */
  masters: RedisWork[];
  /** The same mix, unsharded, on one Redis: per job. */
  single: RedisWork;
}

export async function clusterSplit(singleUrl: string, mockBaseUrl: string, n: number, prefix: () => string, log: Logger, quiet: Logger): Promise<ClusterSplit> {
  const single = await drain(configOf({ url: singleUrl }, prefix(), mockBaseUrl, false), singleUrl, n, log, quiet, { mix: MIX });
  const cluster = await LocalCluster.start(3);
  try {
    const config = configOf({ cluster: cluster.nodes }, prefix(), mockBaseUrl, true);
    // Each provider's queue is one slot, wherever CRC16 puts it: placed here on a master each, as
    // an operator would move a hot queue's slot (the shards spread by themselves, see Keys).
    for (const [i, p] of PROVIDERS.entries()) await cluster.place(`${queuePrefix(config.redis, p)}:llm-${p}:wait`, i);
    const meters = cluster.ports.map((p) => cluster.node(p));
    const intake = await startRuntime({ config, redisUrl: config.redis.url!, log: quiet });
    const before = await Promise.all(meters.map(redisWork));
    await fill(intake, n, MIX);
    // Pub/sub reaches every node of a cluster: any one will do to count the ends.
    const counter = await terminalCounter(`redis://127.0.0.1:${cluster.ports[0]}`, intake.store.keys.events, n);
    const workers = await startRuntime({ config, redisUrl: config.redis.url!, log, workers: [] });
    await counter.all;
    const after = await Promise.all(meters.map(redisWork));
    counter.close();
    await workers.close();
    await intake.close();
    for (const m of meters) m.disconnect();
    return { jobs: n, masters: after.map((a, i) => perJob(before[i]!, a, n)), single: single.redis };
  } finally {
    await cluster.stop();
  }
}
