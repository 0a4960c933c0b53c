import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { PRESETS } from '../providers/presets.js';
import { configSchema, type Config } from './schema.js';

/** A configuration that cannot be used; the message names the path and the problem. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces `${VAR}` / `${VAR:-default}` in string values only, so a variable cannot inject YAML structure. */
function interpolate(node: unknown, env: Env, path: string[]): unknown {
  if (typeof node === 'string') {
    return node.replace(VAR, (_m, name: string, fallback: string | undefined) => {
      const value = env[name];
      if (value !== undefined && value !== '') return value;
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`config error at ${path.join('.') || '(root)'}: environment variable ${name} is not set`);
    });
  }
  if (Array.isArray(node)) return node.map((v, i) => interpolate(v, env, [...path, String(i)]));
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolate(v, env, [...path, k])]));
  }
  return node;
}

function describe(error: z.ZodError, source: string): string {
  const lines = error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
  return `invalid configuration in ${source}:\n${lines.join('\n')}`;
}

/** The configuration a user gets with no file: every provider whose key is set, else the built-in mock. */
export function defaultConfigInput(env: Env): Record<string, unknown> {
  const providers: Record<string, unknown> = {};
  const fast: string[] = [];
  const smart: string[] = [];
  for (const [name, preset] of Object.entries(PRESETS)) {
    if (preset.key_env ? !env[preset.key_env] : !(preset.base_url_env && env[preset.base_url_env])) continue;
    providers[name] = { preset: name };
    fast.push(`${name}/${preset.fast}`);
    smart.push(`${name}/${preset.smart}`);
  }
  if (fast.length === 0) {
    providers.mock = { type: 'mock' };
    fast.push('mock/mock-fast');
    smart.push('mock/mock-smart');
  }
  return { providers, models: { fast, smart }, tasks: { default: 'fast' } };
}

export interface LoadedConfig {
  config: Config;
  /** Where it came from, for the start-up log line. */
  source: string;
}

/** `preset: groq` supplies what a provider entry leaves out: type, base URL, the key from its usual variable. */
function applyPresets(providers: unknown, env: Env): unknown {
  if (!providers || typeof providers !== 'object') return providers;
  return Object.fromEntries(
    Object.entries(providers as Record<string, Record<string, unknown>>).map(([name, entry]) => {
      if (!entry || typeof entry !== 'object' || entry.preset === undefined) return [name, entry];
      const { preset: presetName, ...rest } = entry;
      const preset = PRESETS[String(presetName)];
      if (!preset) {
        throw new ConfigError(`config error at providers.${name}.preset: unknown preset "${String(presetName)}"; known: ${Object.keys(PRESETS).join(', ')}`);
      }
      const baseUrl = (preset.base_url_env && env[preset.base_url_env]) || preset.base_url;
      const key = preset.key_env ? env[preset.key_env] : undefined;
      const fromEnv = Object.fromEntries(Object.entries(preset.env_fields ?? {}).flatMap(([field, variable]) => (env[variable] ? [[field, env[variable]]] : [])));
      if (!baseUrl && rest.base_url === undefined && preset.type !== 'bedrock') {
        throw new ConfigError(`config error at providers.${name}.base_url: preset ${String(presetName)} needs base_url (or ${preset.base_url_env})`);
      }
      return [name, { type: preset.type, ...(baseUrl && { base_url: baseUrl }), ...(key && { api_key: key }), ...fromEnv, ...rest }];
    }),
  );
}

export function parseConfig(input: unknown, env: Env, source: string): Config {
  const withEnv = interpolate(input ?? {}, env, []) as Record<string, unknown>;
  if (withEnv.providers) withEnv.providers = applyPresets(withEnv.providers, env);
  const redis = { ...(withEnv.redis as object | undefined) } as Record<string, unknown>;
  if (env.REDIS_URL) {
    // Named as what it is: a bad variable, not a bad line in a file that may not even exist.
    if (!/^rediss?:\/\//.test(env.REDIS_URL)) throw new ConfigError(`config error at REDIS_URL: expected a redis:// or rediss:// URL, got ${JSON.stringify(env.REDIS_URL)}`);
    redis.url = env.REDIS_URL;
  }
  const server = { ...(withEnv.server as object | undefined) } as Record<string, unknown>;
  if (env.PORT) {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`config error at PORT: "${env.PORT}" is not a port number`);
    server.port = port;
  }
  const result = configSchema.safeParse({ ...withEnv, redis, server });
  if (!result.success) throw new ConfigError(describe(result.error, source));
  return result.data;
}

/** Reads `SWITCHYARD_CONFIG` (default `./switchyard.yaml`); without a file, builds the default. */
export function loadConfig(env: Env = process.env): LoadedConfig {
  const explicit = env.SWITCHYARD_CONFIG;
  const path = explicit ?? 'switchyard.yaml';
  if (!existsSync(path)) {
    if (explicit) throw new ConfigError(`config file ${explicit} (from SWITCHYARD_CONFIG) does not exist`);
    return { config: parseConfig(defaultConfigInput(env), env, 'built-in defaults'), source: 'built-in defaults' };
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return { config: parseConfig(raw, env, path), source: path };
}
