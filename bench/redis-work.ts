import type { Redis } from 'ioredis';

/** What Redis has done so far: commands, CPU, bytes in and out (INFO commandstats, cpu, stats). */
export interface RedisWork {
  calls: number;
  cpuUs: number;
  bytesIn: number;
  bytesOut: number;
}

const field = (text: string, name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(text)?.[1] ?? 0);

export async function redisWork(redis: Redis): Promise<RedisWork> {
  const [commands, cpu, stats] = await Promise.all([redis.info('commandstats'), redis.info('cpu'), redis.info('stats')]);
  let calls = 0;
  for (const m of commands.matchAll(/calls=(\d+)/g)) calls += Number(m[1]);
  return {
    calls,
    // The main thread's own CPU: what one Redis can give before it tops out.
    cpuUs: (field(cpu, 'used_cpu_sys_main_thread') + field(cpu, 'used_cpu_user_main_thread') || field(cpu, 'used_cpu_sys') + field(cpu, 'used_cpu_user')) * 1e6,
    bytesIn: field(stats, 'total_net_input_bytes'),
    bytesOut: field(stats, 'total_net_output_bytes'),
  };
}

/** Per job, between two readings (the readings' own INFO calls are a few commands in thousands of jobs). */
export function perJob(before: RedisWork, after: RedisWork, jobs: number): RedisWork {
  return {
    calls: (after.calls - before.calls) / jobs,
    cpuUs: (after.cpuUs - before.cpuUs) / jobs,
    bytesIn: (after.bytesIn - before.bytesIn) / jobs,
    bytesOut: (after.bytesOut - before.bytesOut) / jobs,
  };
}

export async function usedMemory(redis: Redis): Promise<number> {
  return field(await redis.info('memory'), 'used_memory');
}
