import type { Redis } from 'ioredis';

const COALESCED = Symbol('switchyard.coalescedWrites');

type Stream = NonNullable<Redis['stream']> & { [COALESCED]?: true };

/**
 * Sends every command written in one turn of the event loop in one socket write, by corking the
 * connection's socket at the turn's first command and uncorking it once the turn's I/O callbacks
 * have run (setImmediate, where ioredis's own auto-pipelining flushes).
 *
 * ioredis's auto-pipelining groups commands the same way, but builds a Pipeline for every flush:
 * it copies each defined script onto the Pipeline, runs each command through its bookkeeping, and
 * sends a connection's next flush only once the last is answered. On a client with the store's
 * nineteen scripts, a script command cost its sender about twice the CPU of one sent alone at 1
 * and 4 in flight, a third more at 32 (BENCH_ONLY=writes). Sent alone, each command is a write of
 * its own, which Redis reads and answers apart (about 9 µs of its CPU a command at 32 in flight,
 * against 6–7 coalesced). Corked, a turn's writes leave as one writev.
 *
 * Order is kept (one socket, one queue of writes). A blocking command is delayed only to the end of
 * its turn. ioredis opens a new socket on every reconnection, so each is corked as it connects.
 */
export function coalesceWrites(redis: Redis): Redis {
  const onConnect = () => {
    const stream = redis.stream as Stream | undefined;
    if (!stream || stream[COALESCED]) return;
    stream[COALESCED] = true;
    const write = stream.write;
    let corked = false;
    const flush = () => {
      corked = false;
      stream.uncork();
    };
    stream.write = function (this: Stream, ...args: unknown[]) {
      if (!corked) {
        corked = true;
        stream.cork();
        setImmediate(flush);
      }
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as Stream['write'];
  };
  redis.on('connect', onConnect);
  onConnect();
  return redis;
}
