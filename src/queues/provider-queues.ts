import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { type ScriptClient, withScripts } from '../redis/scripts.js';
import { tagOf } from '../store/keys.js';
import { type HopCommand, HopCommands } from './hop-command.js';

/** What a hop's BullMQ job carries: just a pointer to the job record, never the prompt or a secret. */
export interface HopData {
  id: string;
  hop: number;
  /** How often processing this hop failed inside the broker (see workers/hop-retries.ts). */
  faults?: number;
}

export function queueName(provider: string): string {
  return `llm-${provider}`;
}

/**
 * The BullMQ prefix of a provider's queue: the broker's own, or, sharded (redis.shards), a hash tag
 * of the provider's own, so Redis Cluster can place each provider's queue on another master.
 */
export function queuePrefix(redis: Pick<Config['redis'], 'prefix' | 'shards'>, provider: string): string {
  return redis.shards > 0 ? `{${tagOf(redis.prefix)}:q:${provider}}` : redis.prefix;
}

/**
 * Deterministic, so re-adding a hop after a crash cannot create a second copy of it. Without the
 * id's `job_`: BullMQ stores the id again in the job's options, and those must stay within the
 * 64 bytes that let Redis keep the hop's hash as a listpack (see hopOptions).
 */
export function hopJobId(id: string, hop: number): string {
  return `${id.slice(id.indexOf('_') + 1)}-h${hop}`;
}

/**
 * Switchyard priority 1 (most urgent) .. 10 maps to BullMQ priority 1 .. 10. Every job gets one:
 * BullMQ runs jobs without a priority ahead of all prioritised ones.
 */
export function bullPriority(priority: number): number {
  return Math.min(10, Math.max(1, Math.round(priority)));
}

/** Hops added per script call: a few ms of Redis time. */
const HOPS_PER_CALL = 200;
const EVENTS_KEPT = 1000;

/** How many finished hop jobs BullMQ keeps, and how long (Bull Board shows them): the workers' removeOnComplete/removeOnFail. */
export function hopRetention(retention: Config['retention']) {
  return {
    removeOnComplete: { count: retention.queue_keep_completed, age: retention.queue_keep_completed_age_s },
    removeOnFail: { count: retention.queue_keep_failed, age: retention.queue_keep_failed_age_s },
  };
}

/** BullMQ's limiter needs a max for `queue.rateLimit` (429 pauses) to bite; this one never binds. */
export const NO_RPM_LIMIT = 1_000_000_000;

/** One BullMQ queue per configured provider: the transport for one hop of a job each. */
export class ProviderQueues {
  /** Each provider's queue, and what builds the commands that add its hops. */
  private readonly queues = new Map<string, { queue: Queue<HopData>; hops: HopCommands }>();
  private readonly scripts: ScriptClient;
  /**
   * Whether a job's first hop can be added by the script that writes its record (hopCommand): they
   * share one slot unless sharded, where each provider queue has a slot of its own.
   */
  readonly addedWithRecords: boolean;

  constructor(
    private readonly connection: Redis,
    private readonly config: Pick<Config, 'providers' | 'redis' | 'retention'>,
  ) {
    this.scripts = withScripts(connection);
    this.addedWithRecords = config.redis.shards === 0;
    for (const provider of Object.keys(config.providers)) {
      // Nothing reads a provider queue's event stream (no QueueEvents), yet BullMQ writes about four
      // events a job to it: the last 1,000 are kept rather than BullMQ's 10,000 (about 1 MB a queue).
      const queue = new Queue<HopData>(queueName(provider), { connection, prefix: queuePrefix(config.redis, provider), streams: { events: { maxLen: EVENTS_KEPT } } });
      this.queues.set(provider, { queue, hops: new HopCommands(queue) });
    }
  }

  private entry(provider: string): { queue: Queue<HopData>; hops: HopCommands } {
    const entry = this.queues.get(provider);
    if (!entry) throw new Error(`no queue for provider "${provider}"`);
    return entry;
  }

  get(provider: string): Queue<HopData> {
    return this.entry(provider).queue;
  }

  all(): [string, Queue<HopData>][] {
    return [...this.queues].map(([provider, { queue }]) => [provider, queue]);
  }

  async enqueueHop(provider: string, id: string, hop: number, priority: number): Promise<void> {
    await this.get(provider).add('hop', { id, hop }, this.hopOptions(id, hop, priority));
  }

  /**
   * The command BullMQ would run to add this hop, as BullMQ builds it (see HopCommands), but not
   * sent: the record's script runs it (see createJobs.lua).
   */
  hopCommand(provider: string, id: string, hop: number, priority: number): Promise<HopCommand> {
    return this.entry(provider).hops.build({ id, hop }, this.hopOptions(id, hop, priority));
  }

  /**
   * Many hops, grouped by provider, a chunk to a script (addHops.lua): each added by BullMQ's own
   * addPrioritizedJob, with the arguments BullMQ built (hopCommand), as addBulk would add them.
   */
  async enqueueHops(hops: { provider: string; id: string; hop: number; priority: number }[]): Promise<void> {
    if (hops.length === 1) return this.enqueueHop(hops[0]!.provider, hops[0]!.id, hops[0]!.hop, hops[0]!.priority);
    const byProvider = new Map<string, typeof hops>();
    for (const h of hops) {
      const list = byProvider.get(h.provider);
      if (list) list.push(h);
      else byProvider.set(h.provider, [h]);
    }
    await Promise.all(
      [...byProvider].flatMap(([provider, list]) =>
        Array.from({ length: Math.ceil(list.length / HOPS_PER_CALL) }, async (_, c) => {
          const commands = await Promise.all(list.slice(c * HOPS_PER_CALL, (c + 1) * HOPS_PER_CALL).map((h) => this.hopCommand(provider, h.id, h.hop, h.priority)));
          await this.scripts.addHops(...commands[0]!.keys, ...commands.flatMap((c) => c.args));
        }),
      ),
    );
  }

  /**
   * BullMQ stores a job's options in its hash, and a hash with a value over 64 bytes is kept as a
   * hashtable (about twice a listpack's memory): so a hop carries only its id and priority. Its
   * retention is the workers' option (hopRetention), its retries the pool's (ProviderPool).
   */
  private hopOptions(id: string, hop: number, priority: number) {
    return { jobId: hopJobId(id, hop), priority: bullPriority(priority) };
  }

  /** How long the provider's queue stays paused (a 429, a spent budget, a full RPM window), or 0. */
  async pausedForMs(provider: string): Promise<number> {
    const ttl = await this.get(provider).getRateLimitTtl(this.config.providers[provider]?.rpm ?? NO_RPM_LIMIT);
    return Math.max(0, ttl);
  }

  /**
   * Requests counted in the provider's current RPM window, or null while a pause holds the queue:
   * `queue.rateLimit` writes a sentinel far above any real count into the same key.
   */
  async requestsInWindow(provider: string): Promise<number | null> {
    const queue = this.get(provider);
    const count = Number((await this.connection.get(queue.keys.limiter!)) ?? 0);
    return count > 1e12 ? null : count;
  }

  /** Best effort: a hop job already taken by a worker is locked and stays; the record guard stops it. */
  async removeHop(provider: string, id: string, hop: number): Promise<void> {
    await this.get(provider).remove(hopJobId(id, hop)).catch(() => 0);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map(({ queue }) => queue.close()));
  }
}
