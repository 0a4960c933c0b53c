import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/** Switchyard's Redis-side logic, one named Lua file per operation in src/lua (as BullMQ does). */
const SCRIPTS = {
  admitJobs: 4,
  createJob: 6,
  discardJob: 4,
  startAttempt: 2,
  settleAttempt: 3,
  lateAttempt: 2,
  endJob: 2,
  reopenJob: 1,
  breakerAcquire: 2,
  breakerRecord: 2,
  windowBudget: 1,
  webhookAttempt: 2,
  batchTransition: 1,
  fileQuota: 5,
  recordStats: 3,
  appendHopLog: 1,
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Reply = (string | number)[] | number;

export type ScriptClient = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<Reply>>;

const read = (path: string) => readFileSync(new URL(`../lua/${path}.lua`, import.meta.url), 'utf8');

/**
 * `--- @include "name"` pulls in src/lua/includes/name.lua, as BullMQ's scripts share their helpers;
 * an include may include others, and each is pulled in once, where it is first named.
 */
const withIncludes = (source: string, seen = new Set<string>()): string =>
  source.replace(/^--- @include "([A-Za-z]+)"$/gm, (_line, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return withIncludes(read(`includes/${name}`), seen);
  });

const sources = Object.fromEntries(Object.keys(SCRIPTS).map((name) => [name, withIncludes(read(name))])) as Record<ScriptName, string>;

/** ioredis runs them by EVALSHA and falls back to EVAL after a script flush or a failover. */
export function withScripts(redis: Redis): ScriptClient {
  for (const [name, numberOfKeys] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua: sources[name as ScriptName] });
  }
  return redis as ScriptClient;
}
