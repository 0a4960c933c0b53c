import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { resolveRedis } from '../src/redis/connection.js';
import { freePort } from '../src/redis/embedded.js';
import { redisUrl } from './support/broker.js';

const log = pino({ level: 'silent' });

describe('finding Redis for npm start', () => {
  it('uses REDIS_URL / the configured URL as given', async () => {
    expect(await resolveRedis('redis://example.invalid:6379', log)).toEqual({ url: 'redis://example.invalid:6379' });
  });

  it('uses a Redis answering on the local port', async () => {
    const resolved = await resolveRedis(undefined, log, { localUrl: redisUrl() });
    expect(resolved.url).toBe(redisUrl());
    expect(resolved.embedded).toBeUndefined();
  });

  it('starts an embedded redis-server with AOF and noeviction when none answers', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-embedded-'));
    const resolved = await resolveRedis(undefined, log, { localUrl: closed, embeddedDir: dir });
    expect(resolved.embedded).toBeDefined();
    const client = new Redis(resolved.url);
    try {
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    } finally {
      client.disconnect();
      await resolved.embedded!.stop();
    }
  });
});
