import { createHash } from 'node:crypto';
import { jobBodySchema } from '../../intake/job-request.js';

/** What the command line fills in for lines that leave it out. */
export interface JobDefaults {
  task?: string | undefined;
  model?: string | undefined;
  priority?: number | undefined;
}

export type Entry =
  | { line: number; kind: 'job'; body: Record<string, unknown>; customId?: string }
  | { line: number; kind: 'bad'; message: string };

export type JobEntry = Extract<Entry, { kind: 'job' }>;

export interface Chunk {
  /** The file's 1-based line number of the chunk's first job: names the chunk in the state and its Idempotency-Key. */
  firstLine: number;
  entries: JobEntry[];
}

/** How many invalid lines a local refusal spells out. */
const MAX_LISTED_PROBLEMS = 20;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A line with `request` is a whole job body; any other object is a chat-completions body, whose
 * `model` (every real one has one, and OpenAI's Batch API routes by it) routes the job, as the
 * broker's own batches do. `--model` overrides a line's model; `--task` and `--priority` only
 * fill gaps, so a line can always override them.
 */
function jobBody(value: Record<string, unknown>, defaults: JobDefaults): Record<string, unknown> {
  let body: Record<string, unknown>;
  if ('request' in value) {
    body = { ...value };
  } else {
    const { model, ...request } = value;
    body = { request, ...(model !== undefined && { model }) };
  }
  if (defaults.model !== undefined) body.model = defaults.model;
  for (const key of ['task', 'priority'] as const) {
    if (body[key] === undefined && defaults[key] !== undefined) body[key] = defaults[key];
  }
  return body;
}

function parseLine(text: string, line: number, defaults: JobDefaults): Entry {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { line, kind: 'bad', message: `line ${line} is not valid JSON: ${(err as Error).message}` };
  }
  if (!isObject(value)) return { line, kind: 'bad', message: `line ${line} is not a JSON object` };
  // Read from the line as written, whichever form it has, so results can be joined back to the caller's ids.
  const customId = isObject(value.metadata) ? value.metadata.custom_id : undefined;
  return { line, kind: 'job', body: jobBody(value, defaults), ...(typeof customId === 'string' && { customId }) };
}

export const inputHash = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** Every non-blank line, in file order, numbered as in the file. */
export function parseInput(bytes: Buffer, defaults: JobDefaults): Entry[] {
  const entries: Entry[] = [];
  bytes
    .toString('utf8')
    .split('\n')
    .forEach((raw, i) => {
      const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (text.trim() !== '') entries.push(parseLine(text, i + 1, defaults));
    });
  return entries;
}

/**
 * Checks every job against the intake's own schema before anything is sent: a bad line near the end
 * of a large file would otherwise be refused only after the chunks before it had been enqueued.
 * Returns the problems, one per line at most, or an empty list.
 */
export function invalidJobs(entries: Entry[]): string[] {
  const problems: string[] = [];
  for (const entry of entries) {
    if (entry.kind !== 'job') continue;
    const parsed = jobBodySchema.safeParse(entry.body);
    if (parsed.success) continue;
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    problems.push(`line ${entry.line}: ${where}${issue.message}`);
  }
  return problems;
}

export function describeProblems(problems: string[]): string {
  const shown = problems.slice(0, MAX_LISTED_PROBLEMS).join('\n  ');
  const more = problems.length > MAX_LISTED_PROBLEMS ? `\n  … and ${problems.length - MAX_LISTED_PROBLEMS} more` : '';
  return `${problems.length} line(s) are not valid jobs, nothing was submitted:\n  ${shown}${more}`;
}

/** Chunk boundaries depend only on the file and the chunk size, so a resumed run rebuilds the same chunks. */
export function chunkJobs(entries: Entry[], size: number): Chunk[] {
  const jobs = entries.filter((e): e is JobEntry => e.kind === 'job');
  const chunks: Chunk[] = [];
  for (let i = 0; i < jobs.length; i += size) {
    const slice = jobs.slice(i, i + size);
    chunks.push({ firstLine: slice[0]!.line, entries: slice });
  }
  return chunks;
}

/**
 * The bulk request's Idempotency-Key: within one run, the same file and chunk always map to the
 * same jobs (a resumed run finds them); a run started over (`--restart`) has a run id of its own,
 * so it submits new jobs rather than find the old run's.
 */
export const chunkKey = (run: { run_id?: string; input_sha256: string }, chunk: Chunk): string =>
  `${run.run_id ? `${run.run_id}-` : ''}${run.input_sha256.slice(0, 16)}-${chunk.firstLine}`;
