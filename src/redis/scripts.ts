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

/** A settle waiting for its hop's finish (see FinishRiders). */
interface Rider {
  keys: string[];
  args: (string | number)[];
  /** Sent once already, with no reply: it may have been applied. */
  resent: boolean;
  done: (reply: number) => void;
  fail: (err: Error) => void;
}

/** BullMQ's moveToFinished: 14 keys, then 9 arguments (the last, fields to update, '' for a completion). */
const FINISH_KEYS = moveToFinished.keys;
const FINISH_ARGS = 9;
/** The hop's BullMQ job key, among BullMQ's keys for moveToFinished. */
const FINISH_JOB_KEY = 11;

/**
 * Settles that ride on BullMQ's finish of the hop they settle (finishAndClaim.lua): a hop that
 * succeeded hands its settle here and returns; when BullMQ's worker then moves the hop to completed,
 * the settle goes in the same script, before BullMQ's own step, and its reply comes back here. One
 * round trip a job fewer, and the settle still comes first, so a hop whose lock was lost meanwhile
 * has settled its job all the same and its re-run finds it ended.
 */
export class FinishRiders {
  private readonly waiting = new Map<string, Rider>();

  /**
   * Resolves with settleAttempt's reply once the finish of the hop `bullKey` has run it; `resent`
   * when a send with no reply came before. Null when another settle already waits for that hop (a
   * stalled hop's re-run in this same process while its first run ended): this one goes alone.
   */
  ride(bullKey: string, keys: string[], args: (string | number)[]): Promise<{ reply: number; resent: boolean }> | null {
    if (this.waiting.has(bullKey)) return null;
    return new Promise((resolve, reject) => {
      const rider: Rider = { keys, args, resent: false, done: (reply) => resolve({ reply, resent: rider.resent }), fail: reject };
      this.waiting.set(bullKey, rider);
    });
  }

  /**
   * The arguments BullMQ's finish is sent with, this hop's settle after them when one waits for it:
   * whether BullMQ completes the hop or, after a completion it could not make, fails it, the call
   * succeeded and the job is settled so.
   */
  board(args: unknown[]): { args: unknown[]; rider?: Rider } {
    const rider = this.waiting.get(String(args[FINISH_JOB_KEY]));
    if (!rider) return { args };
    this.waiting.delete(String(args[FINISH_JOB_KEY]));
    const own = args.slice(0, FINISH_KEYS + FINISH_ARGS);
    while (own.length < FINISH_KEYS + FINISH_ARGS) own.push('');
    return { args: [...own, ...rider.keys, ...rider.args], rider };
  }

  /** A finish that failed with no reply: its settle goes with the finish's next try, if BullMQ makes one, or with `leftovers`. */
  unanswered(bullKey: string, rider: Rider): void {
    rider.resent = true;
    this.waiting.set(bullKey, rider);
  }

  /**
   * The settle of hop `bullKey` if BullMQ has finished the hop without carrying it (had it been
   * carried, it would be gone from here): taken out for the caller to send alone.
   */
  uncarried(bullKey: string): Uncarried | undefined {
    const rider = this.waiting.get(bullKey);
    if (!rider) return undefined;
    this.waiting.delete(bullKey);
    return alone(rider);
  }

  /** Settles whose finish never ran (BullMQ skips it once its connection is closing), taken out for the caller to send alone. */
  leftovers(): Uncarried[] {
    const left = [...this.waiting.values()].map(alone);
    this.waiting.clear();
    return left;
  }
}

/** A settle to send alone, and how its reply reaches whoever handed it over. */
export interface Uncarried {
  keys: string[];
  args: (string | number)[];
  settled: (reply: number) => void;
  fail: (err: Error) => void;
}

const alone = (r: Rider): Uncarried => ({ keys: r.keys, args: r.args, settled: r.done, fail: r.fail });

/**
 * Makes BullMQ's fetches on this connection claim the hops they take (fetchAndClaim.lua,
 * finishAndClaim.lua): BullMQ defines its scripts on a connection only under names not already
 * there (`moveToActive:<version>`), so these, defined first under its names, are what its workers
 * run. A hop then reaches its processor with its claim (`syClaim`), one round trip fewer a job;
 * and BullMQ's finish of a hop carries the hop's settle, when it handed one to the riders returned.
 * Null when BullMQ's own were defined first (a worker already ran on this connection): the
 * processors then claim and settle as before.
 */
export function defineClaimOnFetch(redis: Redis, claim: FetchClaim): FinishRiders | null {
  // A table literal, not JSON to decode: the header runs on every call of the script.
  const str = (v: string) => {
    if (v.includes(']==]')) throw new Error(`a key prefix may not contain "]==]": ${v}`);
    return `[==[${v}]==]`;
  };
  const leases = Object.entries(claim.leaseMs).map(([queue, ms]) => `[ ${str(queue)} ] = ${Math.round(ms)}`).join(', ');
  // The TTL as a string: it goes to redis.call, which formats a number argument with snprintf.
  const header = `local SY = { jobs = ${str(claim.jobs)}, outbox = ${str(claim.outbox)}, events = ${str(claim.events)}, ttlMs = "${Math.round(claim.ttlMs)}", shard = ${str(claim.shard)}, leaseMs = { ${leases} } }\n`;
  const wrapped = [
    [moveToActive, 'fetchAndClaim'],
    [moveToFinished, 'finishAndClaim'],
  ] as const;
  if (wrapped.some(([script]) => `${script.name}:${bullmqVersion}` in redis)) return null;
  for (const [script, file] of wrapped) redis.defineCommand(`${script.name}:${bullmqVersion}`, { numberOfKeys: script.keys, lua: header + build(file) });
  const riders = new FinishRiders();
  // BullMQ runs a script as client[name](args), one array: the settle, if any, boards there.
  const name = `${moveToFinished.name}:${bullmqVersion}`;
  const commands = redis as unknown as Record<string, (args: unknown[]) => Promise<unknown>>;
  const finish = commands[name]!.bind(redis);
  commands[name] = async (args: unknown[]) => {
    const { args: sent, rider } = riders.board(args);
    if (!rider) return finish(sent);
    let reply: unknown;
    try {
      reply = await finish(sent);
    } catch (err) {
      riders.unanswered(String(args[FINISH_JOB_KEY]), rider);
      throw err;
    }
    const [settled, finished] = reply as [number, unknown];
    rider.done(Number(settled));
    return finished;
  };
  return riders;
}
