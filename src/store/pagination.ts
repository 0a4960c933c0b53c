import type { Redis } from 'ioredis';

/**
 * Ids from a zset index by creation time, newest first, after a cursor id; one past `limit` tells
 * the caller whether there is more.
 */
export async function pageIds(redis: Redis, index: string, limit: number, after?: string): Promise<string[]> {
  let max = '+inf';
  if (after) {
    const score = await redis.zscore(index, after);
    if (score === null) return [];
    max = `(${score}`;
  }
  return redis.zrevrangebyscore(index, max, '-inf', 'LIMIT', 0, limit + 1);
}
