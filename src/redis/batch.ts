import type { ChainableCommander, Redis } from 'ioredis';

type Reply = [Error | null, unknown];

/**
 * Commands sent together and answered as a pipeline answers them ([error, reply] each). On one
 * Redis that is a pipeline. A Cluster pipeline must stay on one node, and a batch may span shards
 * on several, so there each command goes on its own: each node's connection still sends its share
 * in one write (coalesceWrites).
 */
export function batch(redis: Redis): ChainableCommander {
  if (!(redis as { isCluster?: boolean }).isCluster) return redis.pipeline();
  const calls: [string, unknown[]][] = [];
  const proxy: ChainableCommander = new Proxy({} as ChainableCommander, {
    get(_target, name: string) {
      if (name === 'exec') {
        return async (): Promise<Reply[]> =>
          Promise.all(
            calls.map(([command, args]) =>
              ((redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[command]!(...args)).then(
                (value): Reply => [null, value],
                (err: Error): Reply => [err, null],
              ),
            ),
          );
      }
      if (name === 'length') return calls.length;
      // Not a promise: awaiting the batch itself must not queue a `then` command.
      if (name === 'then') return undefined;
      return (...args: unknown[]) => {
        calls.push([name, args]);
        return proxy;
      };
    },
  });
  return proxy;
}
