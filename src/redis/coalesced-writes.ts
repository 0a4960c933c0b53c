import type { Redis } from 'ioredis';

const COALESCED = Symbol('switchyard.coalescedWrites');

type Stream = NonNullable<Redis['stream']> & { [COALESCED]?: true };

/**
 * Sends every command written in one turn of the event loop in one socket write, by corking the
 * connection's socket at the turn's first command and uncorking it once the turn's I/O callbacks
 * have run (setImmediate, where ioredis's own auto-pipelining flushes).
 *
 * ioredis's auto-pipelining groups commands the same way, but builds a Pipeline for every flush:
 * it copies each defined script onto the Pipeline and runs each command through its bookkeeping.
 * Measured on a client with our nineteen scripts, a script command cost its sender about twice as
 * much CPU as sent alone, at 1, 4 and 32 in flight. Sent alone, each command is a write of its own,
 * and Redis reads and answers each apart (about 9 µs a command against 6 when coalesced, at 32 in
 * flight). Corked, the socket's pending writes go out as one writev: the sender's CPU of a command
 * sent alone and Redis's CPU of a pipelined one.
 *
 * Order is kept (one socket, one queue of writes). A blocking command is only delayed to the end of
 * the turn, as auto-pipelining delays it. ioredis opens a new socket on every reconnection, so each
 * is corked as it connects.
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
