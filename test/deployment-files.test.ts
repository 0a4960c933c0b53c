import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { EmbeddedRedis } from '../src/redis/embedded.js';
import { call } from './support/broker.js';
import { type BrokerProcess, spawnBroker } from './support/process.js';

const EXAMPLE = 'switchyard.example.yaml';
const KEY = 'sy-example-key-0123456789abcdef';
const ADMIN_PASSWORD = 'example-admin-pw-0123';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface ComposeService {
  environment?: Record<string, string>;
  ports?: string[];
}

describe('the shipped example configuration and docker-compose.yml', () => {
  const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, ComposeService> };

  it('writes no credential down: the example needs the key and the admin password from the environment', () => {
    expect(readFileSync(EXAMPLE, 'utf8')).not.toMatch(/change-me|dev-pipeline/);
    for (const missing of ['PIPELINE_A_KEY', 'SWITCHYARD_ADMIN_PASSWORD']) {
      const env: Record<string, string> = { SWITCHYARD_CONFIG: EXAMPLE, PIPELINE_A_KEY: KEY, SWITCHYARD_ADMIN_PASSWORD: ADMIN_PASSWORD };
      delete env[missing];
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(missing);
    }
    const { config } = loadConfig({ SWITCHYARD_CONFIG: EXAMPLE, PIPELINE_A_KEY: KEY, SWITCHYARD_ADMIN_PASSWORD: ADMIN_PASSWORD });
    expect(config.auth.api_keys).toEqual([expect.objectContaining({ name: 'pipeline-a', key: KEY })]);
    expect(config.auth.admin).toMatchObject({ user: 'admin', password: ADMIN_PASSWORD });
    // The README's CLI example names a task the example has.
    expect(Object.keys(config.tasks)).toEqual(expect.arrayContaining(['default', 'summarize']));
  });

  it('has compose require both from the environment, with no default, and publish the API on loopback only', () => {
    for (const name of ['api', 'worker']) {
      const env = compose.services[name]!.environment!;
      expect(env.PIPELINE_A_KEY, name).toMatch(/^\$\{PIPELINE_A_KEY:\?.+\}$/);
      expect(env.SWITCHYARD_ADMIN_PASSWORD, name).toMatch(/^\$\{SWITCHYARD_ADMIN_PASSWORD:\?.+\}$/);
      expect(env.SWITCHYARD_CONFIG).toBe('/config/switchyard.yaml');
    }
    expect(compose.services.api!.ports).toEqual(['127.0.0.1:8080:8080']);
    // Compose's own environment makes a valid configuration of the example (REDIS_URL points at its redis).
    const env = compose.services.api!.environment!;
    const { config } = loadConfig({ SWITCHYARD_CONFIG: EXAMPLE, REDIS_URL: env.REDIS_URL!, PIPELINE_A_KEY: KEY, SWITCHYARD_ADMIN_PASSWORD: ADMIN_PASSWORD });
    expect(config.redis.url).toBe('redis://redis:6379');
  });
});

describe('the Node flags the broker starts with', () => {
  it('are the same everywhere a broker process is started: npm\'s scripts, the image\'s entrypoint, the CLI\'s shebang', () => {
    const flags = NODE_FLAGS.join(' ');
    const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
    for (const name of ['start', 'api', 'worker', 'mock-provider', 'switchyard', 'bench']) {
      expect(scripts[name], name).toMatch(new RegExp(`(^|&& )node ${flags} dist/`));
    }
    const entrypoint = /^ENTRYPOINT (.+)$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1];
    expect(JSON.parse(entrypoint!)).toEqual(['node', ...NODE_FLAGS, 'dist/src/cli/main.js']);
    expect(readFileSync('src/cli/main.ts', 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
  });

  it('reach node through the shebang: a script the kernel starts by the built CLI\'s first line runs with them', async () => {
    const probe = `dist/node-flags-probe-${process.pid}.mjs`;
    writeFileSync(probe, `${readFileSync('dist/src/cli/main.js', 'utf8').split('\n')[0]}\nconsole.log(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
    try {
      const { stdout } = await promisify(execFile)(`./${probe}`);
      expect(JSON.parse(stdout)).toEqual(NODE_FLAGS);
    } finally {
      rmSync(probe, { force: true });
    }
  });
});

/* The example runs as written outside compose: `npm start` with it, its two variables and a Redis. */
describe('npm start on the example configuration', () => {
  let redis: EmbeddedRedis;
  let broker: BrokerProcess;
  let url: string;

  beforeAll(async () => {
    redis = await EmbeddedRedis.start({ dir: `.switchyard/test-redis-example-${process.pid}`, persist: false });
    broker = spawnBroker('start', { SWITCHYARD_CONFIG: EXAMPLE, PIPELINE_A_KEY: KEY, SWITCHYARD_ADMIN_PASSWORD: ADMIN_PASSWORD, REDIS_URL: redis.url, PORT: '0' });
    url = String((await broker.waitForLog('API listening', 30_000)).url);
  }, 60_000);
  afterAll(async () => {
    await broker?.stop();
    await redis?.stop();
  });

  it('serves jobs with the key, refuses them without, and opens Bull Board and /metrics to the admin', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    const created = await call(url, 'POST', '/v1/jobs', { task: 'summarize', request: { messages: [{ role: 'user', content: 'Say hello' }] } }, auth);
    expect(created.status).toBe(202);
    const done = await call(url, 'GET', `/v1/jobs/${created.body.id}?wait=20`, undefined, auth);
    expect(done.body).toMatchObject({ status: 'succeeded', provider: 'mock', result: { object: 'chat.completion' } });
    expect((await call(url, 'GET', '/v1/jobs')).status).toBe(401);
    for (const path of ['/admin/queues', '/metrics']) {
      expect((await fetch(`${url}${path}`, { headers: { authorization: basic('admin', ADMIN_PASSWORD) } })).status, path).toBe(200);
      expect((await fetch(`${url}${path}`)).status, path).toBe(401);
    }
  });
});
