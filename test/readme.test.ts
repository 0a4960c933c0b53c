import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.js';
import { PRESETS } from '../src/providers/presets.js';

const README = readFileSync('README.md', 'utf8');
const section = (heading: string) => {
  const start = README.indexOf(`\n## ${heading}\n`);
  expect(start, `README has a "## ${heading}" section`).toBeGreaterThan(0);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
};

/** Every setting the schema accepts, as a dotted path (`<name>` for a key of the user's choosing). */
function settings(schema: z.ZodType, path = '', out: string[] = []): string[] {
  const def = (schema as unknown as { _zod: { def: Record<string, any> } })._zod.def;
  switch (def.type) {
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
      return settings(def.innerType, path, out);
    case 'pipe':
      return settings(def.in, path, out);
    case 'object':
      for (const [key, value] of Object.entries(def.shape as Record<string, z.ZodType>)) settings(value, path ? `${path}.${key}` : key, out);
      return out;
    case 'record': {
      const inner = (def.valueType as { _zod: { def: { type: string } } })._zod.def.type;
      if (['object', 'default', 'prefault', 'optional'].includes(inner)) return settings(def.valueType, `${path}.<name>`, out);
      out.push(`${path}.<name>`);
      return out;
    }
    case 'array':
      if ((def.element as { _zod: { def: { type: string } } })._zod.def.type === 'object') return settings(def.element, `${path}[]`, out);
      out.push(path);
      return out;
    default:
      out.push(path);
      return out;
  }
}

/* The README is the manual: what it lists must be what the code has. */
describe('the README', () => {
  it('documents every configuration setting the schema accepts', () => {
    const documented = section('Configuration');
    const all = settings(configSchema);
    expect(all.length).toBeGreaterThan(50);
    expect(all.filter((path) => !documented.includes(`\`${path}\``))).toEqual([]);
  });

  it('names every key variable that enables a provider without a config file', () => {
    const quickStart = section('Quick start');
    const variables = Object.values(PRESETS).flatMap((p) => [p.key_env, p.base_url_env]).filter((v): v is string => v !== undefined);
    expect(variables.filter((v) => !quickStart.includes(`\`${v}\``))).toEqual([]);
  });

  it('never tells anyone to run npx switchyard, which would fetch an unrelated npm package', () => {
    const commands = README.split('\n').filter((l) => /npx switchyard/.test(l) && !/Do not run `npx switchyard`/.test(l));
    expect(commands).toEqual([]);
  });
});
