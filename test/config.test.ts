import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const GOOD = `
redis: { url: redis://127.0.0.1:6379, prefix: "{sy}" }
server: { port: 8080 }
auth:
  api_keys: [ { name: pipeline-a, key: "\${PIPELINE_A_KEY}" } ]
providers:
  openai: { type: openai, base_url: https://api.openai.com/v1, api_key: "\${OPENAI_API_KEY}", rpm: 500, tpm: 200000, max_in_flight: 100, timeout_ms: 60000 }
  local:  { type: openai, base_url: "\${VLLM_URL:-http://127.0.0.1:8000/v1}" }
models:
  fast: [openai/gpt-4o-mini, local/llama]
tasks:
  classify: fast
  direct: openai/gpt-4o
  default: fast
`;

describe('configuration', () => {
  it('loads the YAML file with ${VAR} and ${VAR:-default} interpolation', () => {
    const path = file('good.yaml', GOOD);
    const { config, source } = loadConfig({ SWITCHYARD_CONFIG: path, OPENAI_API_KEY: 'sk-live-abc', PIPELINE_A_KEY: 'pipeline-a-key-0123456789' });
    expect(source).toBe(path);
    expect(config.providers.openai).toMatchObject({ api_key: 'sk-live-abc', rpm: 500, max_in_flight: 100 });
    expect(config.providers.local!.base_url).toBe('http://127.0.0.1:8000/v1');
    expect(config.providers.local!.max_in_flight).toBe(50);
    expect(config.auth.api_keys[0]).toEqual({ name: 'pipeline-a', key: 'pipeline-a-key-0123456789' });
    expect(config.retention.job_ttl_s).toBe(604800);
  });

  it('lets REDIS_URL and PORT override the file', () => {
    const path = file('good2.yaml', GOOD);
    const { config } = loadConfig({ SWITCHYARD_CONFIG: path, OPENAI_API_KEY: 'k', PIPELINE_A_KEY: 'pipeline-a-key-0123456789', REDIS_URL: 'redis://10.0.0.5:6380', PORT: '9999' });
    expect(config.redis.url).toBe('redis://10.0.0.5:6380');
    expect(config.server.port).toBe(9999);
  });

  const bad: [string, string, Record<string, string>, RegExp][] = [
    ['a missing variable', GOOD, { PIPELINE_A_KEY: 'pipeline-a-key-0123456789' }, /providers\.openai\.api_key: environment variable OPENAI_API_KEY is not set/],
    ['an unknown provider type', 'providers: { x: { type: telepathy } }\ntasks: { default: x/y }', {}, /providers\.x\.type/],
    ['a chain naming an unknown provider', 'providers: { a: { type: openai } }\nmodels: { fast: [b/m] }\ntasks: { default: fast }', {}, /models\.fast\.0: unknown provider "b"/],
    ['a task naming an unknown alias', 'providers: { a: { type: openai } }\ntasks: { default: nope }', {}, /tasks\.default: unknown model alias "nope"/],
    ['no default task', 'providers: { a: { type: openai } }\nmodels: { fast: [a/m] }\ntasks: { x: fast }', {}, /tasks\.default: a "default" task route is required/],
    ['a wrong value type', 'providers: { a: { type: openai, rpm: lots } }\ntasks: { default: a/m }', {}, /providers\.a\.rpm/],
    ['an unknown key', 'providers: { a: { type: openai } }\ntasks: { default: a/m }\nbreakr: {}', {}, /breakr/],
    ['no providers', 'providers: {}\ntasks: { default: a/m }', {}, /providers: configure at least one provider/],
    ['invalid YAML', 'providers: [unclosed', {}, /not valid YAML/],
    ['a bad PORT', 'providers: { a: { type: openai } }\ntasks: { default: a/m }', { PORT: 'eighty' }, /PORT/],
  ];

  it.each(bad)('stops start-up on %s, naming the path', (_name, text, env, message) => {
    const path = file(`bad-${Math.random()}.yaml`, text);
    expect(() => loadConfig({ SWITCHYARD_CONFIG: path, ...env })).toThrow(ConfigError);
    expect(() => loadConfig({ SWITCHYARD_CONFIG: path, ...env })).toThrow(message);
  });

  it('refuses a SWITCHYARD_CONFIG that does not exist', () => {
    expect(() => loadConfig({ SWITCHYARD_CONFIG: join(dir, 'absent.yaml') })).toThrow(/does not exist/);
  });

  it('without a file, uses the built-in mock provider when no key is set', () => {
    const { config, source } = loadConfig({ SWITCHYARD_CONFIG: undefined });
    expect(source).toBe('built-in defaults');
    expect(Object.keys(config.providers)).toEqual(['mock']);
    expect(config.providers.mock!.type).toBe('mock');
    expect(config.tasks.default).toEqual([{ model: 'fast' }]);
    expect(config.models.fast!.targets.map((t) => t.target)).toEqual(['mock/mock-fast']);
  });

  it('fills a provider from its preset: type, base URL and the key from the usual variable', () => {
    const path = file('preset.yaml', 'providers:\n  groq: { preset: groq, rpm: 30 }\n  local: { preset: vllm, base_url: "http://10.0.0.9:8000/v1" }\ntasks: { default: groq/llama-3.1-8b-instant }');
    const { config } = loadConfig({ SWITCHYARD_CONFIG: path, GROQ_API_KEY: 'gsk-preset' });
    expect(config.providers.groq).toMatchObject({ type: 'openai', base_url: 'https://api.groq.com/openai/v1', api_key: 'gsk-preset', rpm: 30 });
    expect(config.providers.local).toMatchObject({ type: 'openai', base_url: 'http://10.0.0.9:8000/v1' });
    const unknown = file('preset-bad.yaml', 'providers:\n  x: { preset: nowhere }\ntasks: { default: x/m }');
    expect(() => loadConfig({ SWITCHYARD_CONFIG: unknown })).toThrow(/providers\.x\.preset: unknown preset "nowhere"/);
  });

  it('fills bedrock from the AWS variables when a config names its preset', () => {
    const path = file('bedrock.yaml', 'providers:\n  aws: { preset: bedrock }\ntasks: { default: aws/amazon.nova-lite-v1:0 }');
    const { config } = loadConfig({ SWITCHYARD_CONFIG: path, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: 'AKIA123', AWS_SECRET_ACCESS_KEY: 'secret/123' });
    expect(config.providers.aws).toMatchObject({ type: 'bedrock', region: 'eu-west-1', aws_access_key_id: 'AKIA123', aws_secret_access_key: 'secret/123' });
    // Generic AWS variables alone do not switch Bedrock on.
    expect(Object.keys(loadConfig({ AWS_ACCESS_KEY_ID: 'AKIA123', AWS_SECRET_ACCESS_KEY: 's', AWS_REGION: 'us-east-1' }).config.providers)).toEqual(['mock']);
  });

  it('asks azure-openai for its endpoint and api-version, bedrock for region and credentials', () => {
    const azure = file('azure.yaml', 'providers:\n  az: { type: azure-openai }\ntasks: { default: az/gpt-4o }');
    expect(() => loadConfig({ SWITCHYARD_CONFIG: azure })).toThrow(/providers\.az\.base_url: required for type azure-openai/);
    expect(() => loadConfig({ SWITCHYARD_CONFIG: azure })).toThrow(/providers\.az\.api_version/);
  });

  it('without a file, enables every provider whose key variable is set, in a fallback chain', () => {
    const { config } = loadConfig({ OPENAI_API_KEY: 'sk-a', GROQ_API_KEY: 'gsk-b' });
    expect(Object.keys(config.providers).sort()).toEqual(['groq', 'openai']);
    expect(config.providers.openai).toMatchObject({ type: 'openai', api_key: 'sk-a', base_url: 'https://api.openai.com/v1' });
    expect(config.models.fast!.targets.map((t) => t.target)).toEqual(['openai/gpt-4o-mini', 'groq/llama-3.1-8b-instant']);
  });
});

describe('batch webhooks in the configuration', () => {
  const base = { providers: { p: { type: 'mock' } }, tasks: { default: 'p/m' } };
  it('refuses a batch webhook with no secret to sign its events', () => {
    expect(() => parseConfig({ ...base, webhooks: { batch_url: 'https://hooks.example.com/b' } }, {}, 'test')).toThrow(/webhooks\.batch_url: batch events are signed: set webhooks\.secret/);
    expect(() => parseConfig({ ...base, auth: { api_keys: [{ name: 't', key: 'k'.repeat(20), webhook_url: 'https://hooks.example.com/t' }] } }, {}, 'test')).toThrow(/auth\.api_keys\.0\.webhook_url: batch events are signed/);
  });
});
