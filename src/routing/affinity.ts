import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ChatRequest } from '../providers/types.js';
import type { Keys } from '../store/keys.js';

/** How long this process trusts an affinity it read, before reading it again; a miss only briefly, since the first success makes it a hit. */
const LOCAL_TTL_MS = 2000;
const LOCAL_MISS_TTL_MS = 100;
const LOCAL_MAX = 10_000;

/**
 * Prompt-cache affinity: jobs whose prompt starts with the same `min_prefix_chars` (tools, then
 * messages, as providers cache them) go to the target that last served that prefix. Providers cache
 * per deployment, so a second deployment of the same model starts cold; sticking is worth it only
 * for prefixes long enough to be cached at all (OpenAI and Anthropic cache from 1,024 tokens).
 * The target is written by the job's success (settleAttempt.lua) and read here, with a short local
 * memory so a burst of one prefix costs one read.
 */
export class Affinity {
  private readonly local = new Map<string, { target: string | null; at: number }>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /**
   * The affinity key for this request through `alias`, or null when its prompt is shorter than the
   * prefix; kept in the tenant's shard, where the job's success writes it.
   */
  keyOf(alias: string, request: ChatRequest, minPrefixChars: number, tenant: string): string | null {
    const prompt = JSON.stringify([request.tools ?? null, request.messages]);
    if (prompt.length < minPrefixChars) return null;
    const hash = createHash('sha256').update(prompt.slice(0, minPrefixChars)).digest('base64url').slice(0, 22);
    return this.keys.affinity(alias, hash, this.keys.tenantShard(tenant));
  }

  async lookup(key: string, now = Date.now()): Promise<string | null> {
    const seen = this.local.get(key);
    if (seen && now - seen.at < (seen.target === null ? LOCAL_MISS_TTL_MS : LOCAL_TTL_MS)) return seen.target;
    const target = await this.redis.get(key);
    if (this.local.size >= LOCAL_MAX) this.local.clear();
    this.local.set(key, { target, at: now });
    return target;
  }
}
