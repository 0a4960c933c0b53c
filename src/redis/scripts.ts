import { readFileSync } from 'node:fs';
import { addPrioritizedJob } from 'bullmq/dist/esm/scripts/addPrioritizedJob-9.js';
import { moveToActive } from 'bullmq/dist/esm/scripts/moveToActive-11.js';
import { moveToFinished } from 'bullmq/dist/esm/scripts/moveToFinished-14.js';
import { version as bullmqVersion } from 'bullmq/dist/esm/version.js';
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
const BULLMQ: Record<string, { content: string }> = { addPrioritizedJob, moveToActive, moveToFinished };
const withBullmq = (source: string): string =>
  source.replace(/^--- @bullmq "([A-Za-z]+)"$/gm, (_line, name: string) => {
    const script = BULLMQ[name];
    if (!script) throw new Error(`no BullMQ script "${name}" to include`);
    return `local function ${name}(KEYS, ARGV)\n${script.content}\nend`;
  });

/** `--- @script "name"` makes one of ours (src/lua/name.lua) a function of that name taking (KEYS, ARGV), for a script that runs it inside its own step. */
const withOwn = (source: string): string =>
  source.replace(/^--- @script "([A-Za-z]+)"$/gm, (_line, name: string) => `local function ${name}(KEYS, ARGV)\n${build(name)}\nend`);

const build = (file: string): string => withBullmq(withOwn(withIncludes(read(file))));

const sources = Object.fromEntries(Object.keys(SCRIPTS).map((name) => [name, build(fileOf(name as ScriptName))])) as Record<ScriptName, string>;

/** ioredis runs them by EVALSHA and falls back to EVAL after a script flush or a failover. */
export function withScripts(redis: Redis): ScriptClient {
  for (const name of Object.keys(SCRIPTS) as ScriptName[]) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: keysOf(name), lua: sources[name] });
  }
  return redis as ScriptClient;
}

/** What the fetch's claim needs to know that BullMQ's own arguments do not say (see claimFetched.lua). */
export interface FetchClaim {
  /** Record keys are this followed by the job id. */
  jobs: string;
  outbox: string;
  events: string;
  ttlMs: number;
  shard: string;
  /** Per provider queue, by its BullMQ key prefix: how long a call may hold its least-busy lease. */
  leaseMs: Record<string, number>;
}

/**
 * Makes BullMQ's fetches on this connection claim the hops they take (fetchAndClaim.lua,
 * finishAndClaim.lua): BullMQ defines its scripts on a connection only under names not already
 * there (`moveToActive:<version>`), so these, defined first under its names, are what its workers
 * run. A hop then reaches its processor with its claim (`syClaim`), one round trip fewer a job.
 * False when BullMQ's own were defined first (a worker already ran on this connection): the
 * processors then claim as before.
 */
export function defineClaimOnFetch(redis: Redis, claim: FetchClaim): boolean {
  // A table literal, not JSON to decode: the header runs on every call of the script.
  const str = (v: string) => {
    if (v.includes(']==]')) throw new Error(`a key prefix may not contain "]==]": ${v}`);
    return `[==[${v}]==]`;
  };
  const leases = Object.entries(claim.leaseMs).map(([queue, ms]) => `[ ${str(queue)} ] = ${Math.round(ms)}`).join(', ');
  const header = `local SY = { jobs = ${str(claim.jobs)}, outbox = ${str(claim.outbox)}, events = ${str(claim.events)}, ttlMs = ${Math.round(claim.ttlMs)}, shard = ${str(claim.shard)}, leaseMs = { ${leases} } }\n`;
  const wrapped = [
    [moveToActive, 'fetchAndClaim'],
    [moveToFinished, 'finishAndClaim'],
  ] as const;
  if (wrapped.some(([script]) => `${script.name}:${bullmqVersion}` in redis)) return false;
  for (const [script, file] of wrapped) redis.defineCommand(`${script.name}:${bullmqVersion}`, { numberOfKeys: script.keys, lua: header + build(file) });
  return true;
}
