/**
 * What one script command costs its sender and Redis, three ways of writing it: the broker's
 * coalesced writes (src/redis/coalesced-writes.ts), ioredis's auto-pipelining, and each command
 * written alone. The client has the job store's scripts defined, since ioredis's pipelines copy
 * every one of them; closed loops of 1, 4 and 32 commands in flight.
 */
import { Redis } from 'ioredis';
import { coalesceWrites } from '../src/redis/coalesced-writes.js';
import { withScripts } from '../src/redis/scripts.js';
import { redisWork } from './redis-work.js';

export interface WriteCost {
  way: 'coalesced' | 'auto-pipelined' | 'alone';
  inFlight: number;
  senderUs: number;
  redisUs: number;
}

const WAYS = ['coalesced', 'auto-pipelined', 'alone'] as const;
/** The depths measured: commands in flight at once. */
export const WRITE_DEPTHS = [1, 4, 32] as const;

function client(redisUrl: string, way: WriteCost['way']): Redis {
  const redis = new Redis(redisUrl, { enableAutoPipelining: way === 'auto-pipelined' });
  // The store's own scripts, and one more that answers at once: the command measured.
  withScripts(redis);
  redis.defineCommand('measured', { numberOfKeys: 2, lua: 'return 1' });
  return way === 'coalesced' ? coalesceWrites(redis) : redis;
}

export async function redisWriteCosts(redisUrl: string, prefix: string, commands = 20_000): Promise<WriteCost[]> {
  const meter = new Redis(redisUrl);
  const clients = Object.fromEntries(WAYS.map((w) => [w, client(redisUrl, w)])) as Record<WriteCost['way'], Redis & { measured(...a: string[]): Promise<number> }>;
  const args = [`${prefix}:a`, `${prefix}:b`, 'job_0123456789abcdefghij', String(Date.now()), '{"provider":"mock","model":"bench-model","hop":0}', 'succeeded', '9', '7'];
  const out: WriteCost[] = [];
  try {
    for (const inFlight of WRITE_DEPTHS) {
      for (const way of WAYS) {
        const redis = clients[way];
        await redis.measured(...args);
        let sent = 0;
        const before = await redisWork(meter);
        const cpu0 = process.cpuUsage();
        await Promise.all(Array.from({ length: inFlight }, async () => {
          while (sent++ < commands) await redis.measured(...args);
        }));
        const cpu = process.cpuUsage(cpu0);
        const after = await redisWork(meter);
        out.push({ way, inFlight, senderUs: (cpu.user + cpu.system) / commands, redisUs: (after.cpuUs - before.cpuUs) / commands });
      }
    }
    return out;
  } finally {
    for (const c of Object.values(clients)) c.disconnect();
    meter.disconnect();
  }
}
