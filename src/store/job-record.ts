/** The job as Switchyard keeps it (a Redis hash) and as callers see it. */
import { hopJobId, queueName } from '../queues/provider-queues.js';

export const TERMINAL_STATUSES = ['succeeded', 'failed', 'cancelled', 'expired'] as const;
export const JOB_STATUSES = ['queued', 'running', ...TERMINAL_STATUSES] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export function isTerminal(status: JobStatus): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [detail: string]: unknown;
}

export interface JobError {
  type: string;
  message: string;
  status?: number;
  /** What the provider's Retry-After asked for, when it sent one. */
  retry_after_ms?: number;
  /**
   * For a timeout: `request_size` when the request asked for more tokens than the provider could
   * write within its timeout (not held against the provider), `provider` otherwise.
   */
  cause?: 'request_size' | 'provider';
}

/** One hop's try on one provider: the ledger entry callers use to see why a job went where it went. */
export interface Attempt {
  hop: number;
  provider: string;
  model: string;
  /**
   * succeeded; fallback: failed here, handed to the next target; failed: ended the job;
   * rate_limited: 429 on the last target, the job waits; skipped: not called, its breaker was open;
   * cancelled: the call was stopped because its job was cancelled (or expired); discarded: the
   * call finished after its job had ended, so its answer was dropped (its cost still counts);
   * retried: not a call, an operator re-opened the failed job at this hop.
   */
  outcome: 'succeeded' | 'fallback' | 'failed' | 'rate_limited' | 'skipped' | 'cancelled' | 'discarded' | 'retried';
  error?: JobError;
  started_at: number;
  latency_ms: number;
  /** A streamed call: the chunks it sent and when the first came (ms after the call began). */
  stream?: { chunks: number; first_chunk_ms?: number };
  usage?: Usage;
  /** What this call cost, from its usage and the price table; null when the model has no price. */
  cost_usd?: number | null;
  /** Request parameters this target could not honour and did not send. */
  dropped?: string[];
}

/** One target an alias or chain could have sent a job to, and what routing made of it. */
export interface RoutingCandidate {
  target: string;
  tier: number;
  /** Its place in the job's chain (0 is tried first); absent when it was left out. */
  position?: number;
  /** Left out without a call: the request does not fit its context window. */
  skipped?: 'context_window';
  /** Tried only after every healthy target: its provider is degraded, its breaker open, or it asked for a pause. */
  demoted?: 'degraded' | 'circuit_open' | 'throttled';
  /** The strategy's measure for it: jobs in flight, ms per output token, estimated USD, or share of its rate limits used. */
  score?: number;
  context_window?: number;
}

/** Why a job went where it went (DESIGN section 8). */
export interface RoutingRecord {
  /** The alias that routed it; null for a `provider/model` or an inline chain. */
  alias: string | null;
  strategy: string;
  /** The task rule that matched (its index), when the task has rules. */
  rule?: number;
  /** The prompt estimate routing went by (about four characters a token). */
  input_tokens: number;
  /** The alias it would have gone to, and why it did not: a budget past its downgrade_at. */
  downgraded?: { from: string; reason: 'tenant_budget' | 'alias_budget'; share: number };
  /** Routed off the strategy's pick, to keep every target measured. */
  explored?: boolean;
  /** Sent to the target that last served the same prompt prefix. */
  affinity?: 'hit' | 'miss' | 'lost';
  candidates: RoutingCandidate[];
}

/** One try at delivering a job's event to its webhook. */
export interface WebhookAttempt {
  attempt: number;
  /** Milliseconds since the epoch; the public view rounds to seconds. */
  at: number;
  status_code: number | null;
  latency_ms: number;
  error?: string;
  redelivery?: boolean;
}

export type WebhookStatus = 'pending' | 'delivered' | 'failed';

export interface JobRecord {
  id: string;
  tenant: string;
  status: JobStatus;
  task: string | null;
  model: string | null;
  priority: number;
  metadata: Record<string, string>;
  /** Milliseconds since the epoch; the public view rounds to seconds. */
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  deadline_at: number | null;
  chain: string[];
  hop: number;
  /** How the chain was chosen; null for jobs from before routing was recorded. */
  routing: RoutingRecord | null;
  attempts: Attempt[];
  result: unknown;
  usage: Usage | null;
  cost_usd: number | null;
  error: JobError | null;
  webhook_url: string | null;
  webhook_status: WebhookStatus | null;
  /** How often an operator re-opened the failed job; each end after that owes an event of its own. */
  reopened: number;
  /** Filled by the store only when the job has a webhook. */
  webhook_attempts: WebhookAttempt[];
}

/** Hash fields read for a job view; the request body is left in Redis (it can be large). */
export const RECORD_FIELDS = [
  'id', 'tenant', 'status', 'task', 'model', 'priority', 'metadata', 'created_at', 'started_at',
  'finished_at', 'deadline_at', 'chain', 'hop', 'routing', 'attempts', 'result', 'usage', 'cost_usd', 'error',
  'webhook_url', 'webhook_status', 'reopened', 'alias', 'input_tokens', 'strategy', 'windows',
] as const;

const num = (v: string | null | undefined): number | null => (v === null || v === undefined || v === '' ? null : Number(v));
const json = <T>(v: string | null | undefined, fallback: T): T => (v ? (JSON.parse(v) as T) : fallback);

export function parseRecord(values: (string | null)[]): JobRecord | null {
  const f = Object.fromEntries(RECORD_FIELDS.map((k, i) => [k, values[i] ?? null])) as Record<(typeof RECORD_FIELDS)[number], string | null>;
  if (!f.id || !f.status) return null;
  const chain = json<string[]>(f.chain, []);
  const attempts = json<Attempt[]>(f.attempts, []);
  return {
    id: f.id,
    tenant: f.tenant ?? '',
    status: f.status as JobStatus,
    task: f.task || null,
    model: f.model || null,
    priority: Number(f.priority),
    metadata: json(f.metadata, {}),
    created_at: Number(f.created_at),
    started_at: num(f.started_at),
    finished_at: num(f.finished_at),
    deadline_at: num(f.deadline_at),
    chain,
    hop: Number(f.hop ?? 0),
    routing: routingOf(f, chain),
    attempts,
    result: json(f.result, null),
    usage: json(f.usage, null) ?? (f.result ? (attempts.findLast((a) => a.outcome === 'succeeded')?.usage ?? null) : null),
    cost_usd: num(f.cost_usd),
    error: json(f.error, null),
    webhook_url: f.webhook_url || null,
    webhook_status: (f.webhook_status as WebhookStatus | null) || null,
    reopened: Number(f.reopened ?? 0),
    webhook_attempts: [],
  };
}

/** A routing record as stored in one field: `candidates` left out when they only repeat the chain, `alias` when it has a field of its own. */
type StoredRouting = Omit<RoutingRecord, 'candidates' | 'alias'> & { candidates?: RoutingCandidate[]; alias?: null };

/** Chain position i, tier 1, nothing said of it but its context window. */
const plainCandidate = (c: RoutingCandidate, i: number, chain: string[]) =>
  c.target === chain[i] && c.tier === 1 && c.position === i && Object.keys(c).every((k) => k === 'target' || k === 'tier' || k === 'position' || k === 'context_window');

/**
 * The record fields that say how a job with `chain` was routed. Redis keeps a hash as a compact
 * listpack only while every value is at most 64 bytes, and a routing record in JSON is longer. Most
 * routes are plain: the chain in order, no rule, downgrade, exploration or affinity. They are
 * kept as short fields instead, `input_tokens`, `strategy` (when not ordered) and `windows` (the
 * targets' context windows), beside the record's `alias` and `chain`. Any other route is one
 * `routing` field of JSON, leaving out only what the record already holds.
 */
export function routingFields(routing: RoutingRecord, chain: string[]): (string | number)[] {
  const { candidates, alias, ...rest } = routing;
  const plainCandidates = candidates.length === chain.length && candidates.every((c, i) => plainCandidate(c, i, chain));
  if (plainCandidates && Object.keys(rest).every((k) => k === 'strategy' || k === 'input_tokens')) {
    const windows = candidates.some((c) => c.context_window !== undefined) ? candidates.map((c) => c.context_window ?? '').join(',') : '';
    return ['input_tokens', routing.input_tokens, ...(routing.strategy !== 'ordered' ? ['strategy', routing.strategy] : []), ...(windows ? ['windows', windows] : [])];
  }
  return ['routing', JSON.stringify({ ...(alias === null && { alias }), ...rest, ...(!plainCandidates && { candidates }) })];
}

type Fields = Record<(typeof RECORD_FIELDS)[number], string | null>;

function routingOf(f: Fields, chain: string[]): RoutingRecord | null {
  const alias = f.alias || null;
  if (f.routing) {
    const stored = JSON.parse(f.routing) as StoredRouting;
    return { alias, ...stored, candidates: stored.candidates ?? chain.map((target, position) => ({ target, tier: 1, position })) };
  }
  if (!f.input_tokens) return null;
  const windows = f.windows ? f.windows.split(',') : [];
  return {
    alias,
    strategy: f.strategy ?? 'ordered',
    input_tokens: Number(f.input_tokens),
    candidates: chain.map((target, position) => ({ target, tier: 1, ...(windows[position] && { context_window: Number(windows[position]) }), position })),
  };
}

const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

export function splitTarget(ref: string): { provider: string; model: string } {
  const slash = ref.indexOf('/');
  return { provider: ref.slice(0, slash), model: ref.slice(slash + 1) };
}

/** The job object of the public API (DESIGN section 2). */
export function toPublicJob(job: JobRecord) {
  const current = job.chain[Math.min(job.hop, job.chain.length - 1)];
  const target = current ? splitTarget(current) : null;
  return {
    id: job.id,
    object: 'job' as const,
    status: job.status,
    task: job.task,
    model: job.model,
    priority: job.priority,
    metadata: job.metadata,
    created_at: Math.floor(job.created_at / 1000),
    started_at: seconds(job.started_at),
    finished_at: seconds(job.finished_at),
    expires_at: seconds(job.deadline_at),
    provider: target?.provider ?? null,
    provider_model: target?.model ?? null,
    routing: job.routing,
    attempts: job.attempts.map((a) => ({ ...a, started_at: Math.floor(a.started_at / 1000) })),
    result: job.result,
    usage: job.usage,
    cost_usd: job.cost_usd,
    error: job.error,
    // The BullMQ jobs that carried it (Bull Board shows them under these ids), one a hop it reached.
    hops: [...new Set([...job.attempts.map((a) => a.hop), job.hop])]
      .filter((n) => job.chain[n] !== undefined)
      .sort((a, b) => a - b)
      .map((n) => ({ hop: n, target: job.chain[n]!, queue: queueName(splitTarget(job.chain[n]!).provider), bull_job_id: hopJobId(job.id, n) })),
    webhook: job.webhook_url
      ? {
          url: job.webhook_url,
          // Owed once the job has ended, until the sender says otherwise.
          status: job.webhook_status ?? (isTerminal(job.status) ? 'pending' : null),
          attempts: job.webhook_attempts.map((a) => ({ ...a, at: Math.floor(a.at / 1000) })),
        }
      : null,
  };
}

export type PublicJob = ReturnType<typeof toPublicJob>;
