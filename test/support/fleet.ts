import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.js';
import { dropPrefix, redisUrl, startBroker, type TestBroker } from './broker.js';
import { type BrokerProcess, spawnBroker, writeConfig } from './process.js';

/**
 * An API in this process and worker processes spawned on demand, all on one config file, with a
 * count of how many times each job id ended (terminal events), for tests that kill and restart
 * workers and must show that every job ends exactly once.
 */
export async function startFleet(raw: Record<string, unknown>) {
  const file = writeConfig(raw);
  const api = await startBroker(parseConfig(raw, {}, 'test'), { workers: undefined });
  const ends = new Map<string, number>();
  const subscriber = new Redis(redisUrl());
  subscriber.on('message', (_channel: string, id: string) => ends.set(id, (ends.get(id) ?? 0) + 1));
  await subscriber.subscribe(api.runtime.store.keys.events);
  const workers: BrokerProcess[] = [];
  return {
    api: api as TestBroker,
    ends,
    /** Starts a worker process and waits until its pools run. */
    async spawnWorker(): Promise<BrokerProcess> {
      const w = spawnBroker('worker', { SWITCHYARD_CONFIG: file });
      workers.push(w);
      await w.waitForLog('provider worker pools started');
      return w;
    },
    async close() {
      subscriber.disconnect();
      await Promise.all(workers.map((w) => w.stop('SIGKILL')));
      await api.close();
      await dropPrefix(api.prefix);
    },
  };
}
