import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ApiError, BrokerClient } from './submit/client.js';
import { type Chunk, chunkJobs, describeProblems, type Entry, inputHash, invalidJobs, type JobDefaults, parseInput } from './submit/input.js';
import { runPipeline } from './submit/pipeline.js';
import { createProgress, formatDuration, type Progress } from './submit/progress.js';
import { count, openResults, type ResultWriter, ResultsError, type Tally } from './submit/results.js';
import { loadState, saveState, StateError, statePath, type SubmitState } from './submit/state.js';

export const SUBMIT_USAGE = `usage: switchyard submit <jobs.jsonl> --out <results.jsonl> [options]

Submits every line of a JSONL file as a job, writes each result to --out as it finishes, and resumes
where it stopped when run again with the same arguments.

  --out FILE          results, one JSON line per input line (required); state in FILE.state.json
  --task NAME         task for lines that name none
  --model NAME        model for every line (overrides a line's own "model")
  --priority N        priority (1..10) for lines that give none
  --url URL           the Switchyard API (default $SWITCHYARD_URL or http://127.0.0.1:8080)
  --api-key KEY       bearer key (default $SWITCHYARD_API_KEY)
  --chunk N           jobs per bulk request (default 500, at most 10000)
  --concurrency N     jobs awaited at once (default 64)
  --restart           discard the results and state of an earlier run and start over
                      with new jobs

A line with "request" is a whole job body; any other object is a chat-completions request,
routed by its "model" (an alias or provider/model) when it has one, else by --task or the
default task.
Exit status: 0 every line succeeded, 1 some failed or the run stopped on an error, 2 usage error,
130 interrupted (run the same command again to resume).`;

const DEFAULT_URL = 'http://127.0.0.1:8080';
const DEFAULT_CHUNK = 500;
const MAX_CHUNK = 10_000;
const DEFAULT_CONCURRENCY = 64;
const MAX_CONCURRENCY = 1024;

/** Every awaited job retries on its own while the broker is away; one line a second says so. */
const RETRY_LOG_INTERVAL_MS = 1000;

class UsageError extends Error {}

/** Stops the run cleanly; the reason its pipeline aborts with on SIGINT. */
class Interrupted extends Error {}

interface SubmitOptions {
  input: string;
  out: string;
  url: URL;
  apiKey: string | undefined;
  concurrency: number;
  restart: boolean;
  /** Only what the command line gave: a resumed run takes the rest from its state. */
  chunk: number | undefined;
  defaults: JobDefaults;
}

function integer(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, not "${value}"`);
  return n;
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): SubmitOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        task: { type: 'string' },
        model: { type: 'string' },
        priority: { type: 'string' },
        url: { type: 'string' },
        'api-key': { type: 'string' },
        chunk: { type: 'string' },
        concurrency: { type: 'string' },
        restart: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'no input file given' : `one input file expected, got ${positionals.length}`);
  if (!values.out) throw new UsageError('--out FILE is required');
  const rawUrl = values.url ?? (env.SWITCHYARD_URL || DEFAULT_URL);
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new UsageError(`--url "${rawUrl}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be http(s), not ${url.protocol}`);
  return {
    input: positionals[0]!,
    out: values.out,
    url,
    apiKey: values['api-key'] ?? (env.SWITCHYARD_API_KEY || undefined),
    concurrency: integer('concurrency', values.concurrency, 1, MAX_CONCURRENCY) ?? DEFAULT_CONCURRENCY,
    restart: values.restart ?? false,
    chunk: integer('chunk', values.chunk, 1, MAX_CHUNK),
    defaults: { task: values.task, model: values.model, priority: integer('priority', values.priority, 1, 10) },
  };
}

/**
 * The settings a run uses: an earlier run's, when resuming, because its chunk boundaries and job
 * bodies must be reproduced exactly for its idempotency keys to find the same jobs.
 */
function settle(options: SubmitOptions, sha256: string, prior: SubmitState | null): SubmitState {
  if (!prior || options.restart) {
    // A run of its own: its Idempotency-Keys name it, so it submits new jobs, never an old run's.
    return { version: 1, run_id: randomBytes(8).toString('hex'), input_sha256: sha256, chunk: options.chunk ?? DEFAULT_CHUNK, defaults: options.defaults, chunks: {} };
  }
  if (prior.input_sha256 !== sha256) {
    throw new UsageError(`${options.input} has changed since the run recorded in ${statePath(options.out)}; pass --restart to discard that run's results and start over`);
  }
  const differs = (name: string, given: unknown, recorded: unknown) => {
    if (given !== undefined && given !== recorded) {
      throw new UsageError(`the run being resumed used --${name} ${recorded ?? '(none)'}; resume with the same value, or pass --restart`);
    }
  };
  differs('chunk', options.chunk, prior.chunk);
  for (const key of ['task', 'model', 'priority'] as const) differs(key, options.defaults[key], prior.defaults[key]);
  return prior;
}

/** A state that names chunks this file does not have was written for something else. */
function checkRecorded(state: SubmitState, chunks: Chunk[], path: string): void {
  const sizes = new Map(chunks.map((c) => [String(c.firstLine), c.entries.length]));
  for (const [first, ids] of Object.entries(state.chunks)) {
    if (sizes.get(first) !== ids.length) throw new StateError(`${path} does not match the input's chunks (line ${first}); pass --restart to start over`);
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function readInput(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

function throttled(log: (message: string) => void, intervalMs: number): (message: string) => void {
  let last = 0;
  return (message) => {
    if (Date.now() - last < intervalMs) return;
    last = Date.now();
    log(message);
  };
}

function summary(tally: Tally, total: number, startedAt: number): string {
  const cost = tally.priced ? `, cost $${tally.costUsd.toFixed(6)}` : '';
  return `${total} lines: ${tally.succeeded} succeeded, ${tally.failed} failed, in ${formatDuration((Date.now() - startedAt) / 1000)}${cost}`;
}

/** What a run will do, decided before it writes anything. */
interface Plan {
  sha256: string;
  state: SubmitState;
  statePath: string;
  /** No earlier run to resume: the results file starts empty. */
  fresh: boolean;
  entries: Entry[];
  chunks: Chunk[];
}

/** Reads the input and any earlier run; returns the invalid lines instead when there are any. */
async function plan(options: SubmitOptions): Promise<Plan | { invalid: string[] }> {
  const bytes = await readInput(options.input);
  const path = statePath(options.out);
  const loaded = options.restart ? null : await loadState(path);
  // A run that submitted nothing (refused by the broker, say) left nothing to resume: the corrected
  // command starts afresh instead of being held to that run's options.
  const prior = loaded && Object.keys(loaded.chunks).length > 0 ? loaded : null;
  if (!loaded && !options.restart && (await fileSize(options.out)) > 0) {
    throw new UsageError(`${options.out} already has content but no ${path} to resume from; pass --restart to overwrite it`);
  }
  const sha256 = inputHash(bytes);
  const state = settle(options, sha256, prior);
  const entries = parseInput(bytes, state.defaults);
  const invalid = invalidJobs(entries);
  if (invalid.length > 0) return { invalid };
  const chunks = chunkJobs(entries, state.chunk);
  checkRecorded(state, chunks, path);
  return { sha256, state, statePath: path, fresh: state !== prior, entries, chunks };
}

/** A line that is not a JSON object gets an error result (once) and is never submitted. */
function writeBadLines(entries: Entry[], writer: ResultWriter, tally: Tally, progress: Progress): void {
  for (const entry of entries) {
    if (entry.kind !== 'bad') continue;
    progress.log(entry.message);
    if (tally.lines.has(entry.line)) continue;
    const result = { line: entry.line, id: null, status: 'failed', result: null, usage: null, cost_usd: null, error: { type: 'invalid_input', message: entry.message } };
    writer.write(result);
    count(tally, result);
  }
}

async function execute(p: Plan, options: SubmitOptions, stderr: NodeJS.WritableStream): Promise<number> {
  const startedAt = Date.now();
  // The state exists before any result does, so results without a state always mean someone else's file.
  if (p.fresh) await saveState(p.statePath, p.state);
  const { writer, tally } = openResults(options.out, p.fresh);
  const jobs = p.entries.filter((e) => e.kind === 'job').length;
  const progress = createProgress(stderr, { total: p.entries.length, jobs, submitted: 0, done: tally.lines.size, failed: tally.failed });
  const client = new BrokerClient(options.url, options.apiKey, options.concurrency, throttled(progress.log, RETRY_LOG_INTERVAL_MS));
  const interrupt = new AbortController();
  // `once`: a second Ctrl-C falls through to Node's default and ends the process at once.
  const onSigint = () => interrupt.abort(new Interrupted());
  process.once('SIGINT', onSigint);
  try {
    writeBadLines(p.entries, writer, tally, progress);
    await runPipeline({
      client,
      chunks: p.chunks,
      sha256: p.sha256,
      state: p.state,
      statePath: p.statePath,
      writer,
      tally,
      progress,
      totals: { lines: p.entries.length, jobs },
      concurrency: options.concurrency,
      signal: interrupt.signal,
    });
    progress.stop();
    stderr.write(`${summary(tally, p.entries.length, startedAt)}\n`);
    return tally.failed > 0 ? 1 : 0;
  } catch (err) {
    progress.stop();
    if (err instanceof Interrupted) {
      stderr.write(`interrupted: ${tally.lines.size} of ${p.entries.length} lines have results; run the same command again to resume\n`);
      return 130;
    }
    if (!(err instanceof ApiError)) throw err;
    stderr.write(`error: ${err.message}\n`);
    const submitted = Object.values(p.state.chunks).reduce((n, ids) => n + ids.length, 0);
    if (submitted > 0) stderr.write(`the ${submitted} jobs submitted so far are recorded in ${p.statePath}; running the same command again resumes with them\n`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSigint);
    writer.close();
    await client.close();
  }
}

async function run(options: SubmitOptions, stderr: NodeJS.WritableStream): Promise<number> {
  const planned = await plan(options);
  if ('invalid' in planned) {
    stderr.write(`${describeProblems(planned.invalid)}\n`);
    return 1;
  }
  return execute(planned, options, stderr);
}

/** `switchyard submit`; `argv` is what follows the command name. Returns the exit status. */
export async function runSubmit(
  argv: string[],
  opts: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  try {
    const options = parseOptions(argv, opts.env ?? process.env);
    if (options === 'help') {
      stdout.write(`${SUBMIT_USAGE}\n`);
      return 0;
    }
    return await run(options, stderr);
  } catch (err) {
    if (err instanceof UsageError) {
      stderr.write(`switchyard submit: ${err.message}\n(see switchyard submit --help)\n`);
      return 2;
    }
    if (err instanceof StateError || err instanceof ResultsError) {
      stderr.write(`switchyard submit: ${err.message}\n`);
      return 2;
    }
    // A file system refusal (permissions, a full disk) is the user's to fix, not a bug to trace.
    if (typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall) {
      stderr.write(`switchyard submit: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}
