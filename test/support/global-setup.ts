import type { TestProject } from 'vitest/node';
import { EmbeddedRedis, ping } from '../../src/redis/embedded.js';

/**
 * Tests run against a real Redis: REDIS_URL if set, else the one on 127.0.0.1:6379, else a
 * redis-server started here (no Docker on these machines for testcontainers). Each test file
 * works under its own key prefix, so files can share the server.
 */
let embedded: EmbeddedRedis | undefined;

export async function setup(project: TestProject) {
  let url = process.env.REDIS_URL;
  if (!url) {
    url = 'redis://127.0.0.1:6379';
    if (!(await ping(url))) {
      embedded = await EmbeddedRedis.start({ dir: '.switchyard/test-redis', persist: false });
      url = embedded.url;
    }
  }
  project.provide('redisUrl', url);
}

export async function teardown() {
  await embedded?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
