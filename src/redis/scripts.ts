import { readFileSync } from 'node:fs';
import { addPrioritizedJob } from 'bullmq/dist/esm/scripts/addPrioritizedJob-9.js';
import type { Redis } from 'ioredis';

/**
 * Switchyard's Redis-side logic, one named Lua file per operation in src/lua (as BullMQ does), with
 * how many keys each takes. A script run with more keys besides gets a second name.
 */
const SCRIPTS = {
  admitJobs: 4,
  createJobs: 4,
  // One job's record and its first hop in one step: createJobs with BullMQ's keys after its own.
  createQueuedJob: { file: 'createJobs', keys: 4 + addPrioritizedJob.keys },
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
  addHops: addPrioritizedJob.keys,
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Spec = number | { file: string; keys: number };
const fileOf = (name: ScriptName) => { const spec: Spec = SCRIPTS[name]; return typeof spec === 'number' ? name : spec.file; };
const keysOf = (name: ScriptName) => { const spec: Spec = SCRIPTS[name]; return typeof spec === 'number' ? spec : spec.keys; };
type Reply = (string | number)[] | number;

export type ScriptClient = Redis & Record<ScriptName, (...args: (string | number | Buffer)[]) => Promise<Reply>>;

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

/**
 * `--- @bullmq "addPrioritizedJob"` makes the installed BullMQ's own script a function of that name
 * taking (KEYS, ARGV), so one of ours can add a BullMQ job in its own step, exactly as BullMQ's
 * Queue.add would (same version, same code), with the arguments BullMQ built for it.
 */
const BULLMQ: Record<string, { content: string }> = { addPrioritizedJob };
const withBullmq = (source: string): string =>
  source.replace(/^--- @bullmq "([A-Za-z]+)"$/gm, (_line, name: string) => {
    const script = BULLMQ[name];
    if (!script) throw new Error(`no BullMQ script "${name}" to include`);
    return `local function ${name}(KEYS, ARGV)\n${script.content}\nend`;
  });

const sources = Object.fromEntries(Object.keys(SCRIPTS).map((name) => [name, withBullmq(withIncludes(read(fileOf(name as ScriptName))))])) as Record<ScriptName, string>;

/** ioredis runs them by EVALSHA and falls back to EVAL after a script flush or a failover. */
export function withScripts(redis: Redis): ScriptClient {
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: keysOf(name), lua: sources[name] });
  }
  return redis as ScriptClient;
}
