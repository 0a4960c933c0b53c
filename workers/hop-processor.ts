import { hostname } from 'node:os';
import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import type { Config } from '../src/config/schema.js';
import { type FlatLogger, flatLogger, type Logger } from '../src/log.js';
import type { CallStop, ProviderClient } from '../src/providers/client.js';
import type { ProviderError } from '../src/providers/errors.js';
import type { Metrics } from '../src/metrics.js';
import type { Pricing } from '../src/providers/pricing.js';
import type { ChatRequest, ProviderResult } from '../src/providers/types.js';
import { type HopData, hopJobId, type ProviderQueues, queueName } from '../src/queues/provider-queues.js';
import type { BreakerBoard, CallOutcome, Ticket } from '../src/resilience/breaker-board.js';
import type { RateBudgets, Reservation } from '../src/resilience/rate-budget.js';
import type { JobStreams } from '../src/streams/job-streams.js';
import { type Attempt, type JobError, splitTarget } from '../src/store/job-record.js';
import type { JobStore, Settled } from '../src/store/job-store.js';
import type { FinishRiders } from '../src/redis/scripts.js';
import type { RunningCalls } from './running-calls.js';
import type { TargetStats } from './target-stats.js';

export interface HopProcessorDeps {
  store: JobStore;
  queues: ProviderQueues;
  clients: Map<string, ProviderClient>;
  breakers: BreakerBoard;
  budgets: RateBudgets;
  pricing: Pricing;
  config: Config;
  log: Logger;
  /** Aborted when shutdown's grace runs out: calls in flight stop and their hops go back to the queue. */
  shutdown?: AbortSignal;
  /** This process's calls in flight, stopped when their job is ended elsewhere. */
  running?: RunningCalls;
  metrics?: Metrics;
  /** Where a streaming job's chunks go, for whichever API process holds its caller. */
  streams?: JobStreams;
  /** What this process's calls tell routing: latency, health, fallbacks. */
  stats?: TargetStats;
  /** Where a hop that succeeded leaves its settle for BullMQ's finish of the hop to carry (unsharded, claims on fetch). */
  riders?: FinishRiders;
}

/** A least-busy lease outlives its call's timeout by this much, so a live call never loses it. */
const LEASE_MARGIN_MS = 5000;

/** How long a claimed call may hold its job's least-busy lease: its timeout, and a little. */
export const callLeaseMs = (settings: { timeout_ms: number }) => settings.timeout_ms + LEASE_MARGIN_MS;

/** How often a hop asks again while its unproven provider has every trial call out. */
const TRIAL_WAIT_MS = 50;
/** Spreads the retries of jobs waiting on the same open breaker. */
const OPEN_WAIT_JITTER_MS = 250;

const toJobError = (e: ProviderError): JobError => ({
  type: e.type,
  message: e.message,
  ...(e.status !== undefined && { status: e.status }),
  ...(e.retryAfterMs !== undefined && { retry_after_ms: e.retryAfterMs }),
});

/**
 * What a hop's BullMQ job completes with: one line an operator reads in Bull Board, never the answer
 * itself. Short on purpose: Redis keeps a hash whose values all fit in 64 bytes as a listpack, and a
 * longer return value made it convert every completed hop to a hashtable (about 1% of a job's Redis work).
 */
export type HopResult = string;

/**
 * Thrown by a hop whose job has ended failed or expired, so BullMQ files the hop as failed (and never
 * retries it): the record already says so, and nothing more is to be done with it.
 */
export class JobEnded extends UnrecoverableError {
  constructor(message: string) {
    super(message);
    // Bull Board shows the stack as the hop's error: the job's error is the whole story.
    this.stack = message;
  }
}

/** Which worker process took a hop: its job log's claim line, and BullMQ's `processedBy` on it. */
export const WORKER = `${hostname()}:${process.pid}`;

/** A hop's BullMQ job key (`<prefix>:<queue>:<id>`), where its log lives and by which a settle rides on its finish; '' for a job with no id. */
export const bullKeyOf = (job: Job<HopData>) => (job.id ? `${job.queueQualifiedName}:${job.id}` : '');

/** A hop as BullMQ's fetch handed it over; with its claim (startAttempt's reply) when the fetch made it. */
export type FetchedHop = Job<HopData> & { syClaim?: unknown[] };

const reasonOf = (e: JobError) => `${e.type}${e.status ? ` ${e.status}` : ''}${e.cause ? ` (${e.cause})` : ''}`;

/** One attempt's outcome as a line of the hop's job log. */
function outcomeLine(a: Attempt): string {
  if (a.outcome === 'skipped') return `not called: ${a.error?.message ?? a.error?.type}`;
  const cost = a.cost_usd != null ? `, $${a.cost_usd}` : '';
  if (!a.error) return `${a.outcome} in ${a.latency_ms} ms${a.usage ? `: ${a.usage.total_tokens} tokens${cost}` : ''}`;
  return `${a.outcome} in ${a.latency_ms} ms: ${reasonOf(a.error)}: ${a.error.message}`;
}

/** A hop whose settle did not apply: the record had moved on, or the job had ended meanwhile (finishAndClaim.lua says the same of a settle that rode on its hop's finish). */
const describeUnsettled = (settled: Settled) =>
  settled === 'moved' ? 'stale: the job had moved on to a later hop' : 'discarded: the job had already ended (cancelled or expired)';

const breakerOutcome = (error: ProviderError | null): CallOutcome =>
  !error ? 'success' : error.type === 'rate_limited' ? 'throttled' : error.breakerFailure ? 'failure' : 'neutral';

/**
 * Runs one hop of one job on one provider (DESIGN section 4):
 * breaker admission → claim the hop on the record → token/model budgets → the call, bounded by the
 * provider timeout and the job's deadline → breaker and budget bookkeeping → settle the record:
 * succeeded, failed, handed to the next target, or put back to wait (rate limited, or breaker open,
 * on its last target).
 *
 * Every step is guarded by the record, so running the same hop twice (a duplicate, or a re-run after
 * a worker died) cannot end a job twice.
 */
export class HopProcessor {
  /** Where every attempt's line goes (see flatLogger). */
  private readonly attempts: FlatLogger;

  constructor(
    private readonly provider: string,
    private readonly deps: HopProcessorDeps,
  ) {
    this.attempts = flatLogger(deps.log);
  }

  async process(job: Job<HopData>, token: string | undefined): Promise<HopResult> {
    const { id, hop } = job.data;
    const priority = job.opts.priority ?? 5;
    const { store, breakers, log } = this.deps;
    // Each step writes its line of the hop's BullMQ job log in the script that does it.
    const bullKey = bullKeyOf(job);
    const board = (...lines: string[]) => ({ bullKey, lines });

    // Admission first: a denied call costs no record round trip (unless BullMQ's fetch claimed the
    // hop already, in the same step as taking it). While the provider is unproven and its trial
    // calls are all out, wait here, holding the hop: handing it back to BullMQ would spend an RPM
    // slot again on its return, and a queue-wide pause would restart the RPM window.
    let admission = await breakers.admit(this.provider);
    // The claim BullMQ's fetch made, if it made one: it holds only if the hop goes on at once. After
    // a wait for a trial call the job may have been cancelled or have moved, so it is claimed again.
    const syClaim = (job as FetchedHop).syClaim;
    delete (job as FetchedHop).syClaim;
    const fetched = syClaim && store.claimedOnFetch(id, syClaim);
    let waited = false;
    while (admission.kind === 'wait') {
      waited = true;
      await new Promise((r) => setTimeout(r, TRIAL_WAIT_MS * (1 + Math.random())));
      admission = await breakers.admit(this.provider);
    }
    const ticket: Ticket | null = admission.kind === 'call' ? admission.ticket : null;
    const trialToken = admission.kind === 'call' ? admission.token : undefined;
    const giveBack = () => (ticket ? breakers.record(this.provider, ticket, 'neutral', { ...(trialToken && { token: trialToken }) }) : undefined);

    const settings = this.deps.config.providers[this.provider]!;
    const claim = fetched && !waited ? fetched : await store.start(id, hop, Date.now(), board(`claimed by worker ${WORKER}`), callLeaseMs(settings));
    // Claimed again after a wait, the job reads as running: it was a re-run only if it was one at the fetch.
    if (waited && fetched?.kind === 'ok' && claim.kind === 'ok') claim.rerun = fetched.rerun;
    if (claim.kind !== 'ok') {
      await giveBack();
      log.debug({ job: id, hop, claim: claim.kind }, 'hop skipped');
      if (claim.kind === 'moved') {
        await this.resumeLaterHop(id, hop);
        return `stale: the job has moved on to hop ${claim.hop}`;
      }
      if (claim.kind === 'expired' || (claim.kind === 'terminal' && claim.status === 'expired')) throw new JobEnded('expired: the job passed its deadline before this hop could run');
      if (claim.kind === 'missing') return 'the job no longer exists';
      return claim.status === 'cancelled' ? 'cancelled: the job was cancelled before this hop ran' : `nothing to do: the job has already ${claim.status}`;
    }
    const ref = claim.chain[hop];
    if (!ref) throw new Error(`job ${id} has no target for hop ${hop}`);
    const { model } = splitTarget(ref);
    const next = claim.chain[hop + 1];

    if (admission.kind === 'open' || admission.kind === 'throttled') {
      // Not called: its breaker is open, or it asked us (429) to hold off. Move on, or on the last
      // target wait for the probe / the pause rather than fail a job a little patience could save.
      const until = new Date(admission.until).toISOString();
      const skipped: Attempt = {
        hop, provider: this.provider, model, outcome: 'skipped', started_at: Date.now(), latency_ms: 0,
        error: admission.kind === 'open'
          ? { type: 'circuit_open', message: `the circuit breaker for ${this.provider} is open until ${until}` }
          : { type: 'rate_limited', message: `${this.provider} asked for a pause until ${until}` },
      };
      if (next) {
        const settled = await this.handOn(id, hop, next, priority, skipped, bullKey, claim.alias);
        return settled === 'applied' ? `skipped (${skipped.error!.type}): handed to ${next}` : describeUnsettled(settled);
      }
      await store.settle(id, hop, null, { status: 'retry' }, Date.now(), board(`not called (${skipped.error!.type} until ${until}): waits on this queue`));
      return this.waitOnQueue(job, token, admission.until - Date.now() + Math.random() * OPEN_WAIT_JITTER_MS);
    }

    const request = claim.request as ChatRequest;
    let reservation: Reservation = { ok: true, holds: [] };
    if (!this.deps.budgets.isUnlimited(this.provider, model)) {
      reservation = await this.deps.budgets.reserve(this.provider, model, request);
      if (!reservation.ok) {
        await giveBack();
        await store.settle(id, hop, null, { status: 'retry' }, Date.now(), board(`not called: the ${reservation.scope}'s token or request budget is spent; waits ${reservation.waitMs} ms`));
        // The provider's token budget is spent: pause its whole queue, in every process.
        if (reservation.scope === 'provider') await this.deps.queues.get(this.provider).rateLimit(reservation.waitMs);
        return this.waitOnQueue(job, token, reservation.waitMs);
      }
    }

    const startedAt = Date.now();
    // The call may not outlive the job's deadline: a job never runs late.
    const timeoutMs = claim.deadlineAt === null ? settings.timeout_ms : Math.min(settings.timeout_ms, claim.deadlineAt - startedAt);
    const t0 = performance.now();
    const shutdown = this.deps.shutdown;
    // Ended elsewhere meanwhile (cancelled, expired), the job's call is stopped at once; at the end
    // of shutdown's grace the pool stops every tracked call through the same signal.
    const call = this.deps.running?.track(id);
    const signal = call?.signal ?? shutdown;
    const streaming = claim.request.stream === true && this.deps.streams !== undefined;
    if (streaming && claim.rerun && (await this.deps.streams!.length(id)) > 0) {
      // A worker was lost mid-stream: its chunks reached the caller and cannot be taken back, so
      // the job cannot start over here or on another target.
      call?.release();
      await giveBack();
      const error = { type: 'stream_interrupted', message: 'the stream was cut off when the worker running it was lost; a stream that has begun cannot move to another call' };
      await store.settle(id, hop, null, { status: 'failed', error }, Date.now(), board('the job failed: its stream had begun under a worker that was lost'));
      throw new JobEnded(`stream_interrupted: ${error.message}`);
    }
    let result: (ProviderResult & { streamed?: number; firstChunkMs?: number }) | null;
    try {
      const opts = { timeoutMs: Math.max(1, timeoutMs), ...(signal && { signal }) };
      result = shutdown?.aborted ? null : streaming ? await this.streamCall(id, request, model, opts) : await this.client().complete(request, model, opts);
    } finally {
      call?.release();
    }
    if (result && !result.ok && call?.stopped() && !shutdown?.aborted) {
      // The job ended while its call ran: the call is recorded (it happened), nothing else changes.
      await this.afterCall(id, [giveBack(), reservation.holds.length > 0 ? this.deps.budgets.release(reservation) : undefined]);
      const latency = Math.round(performance.now() - t0);
      const ended = await store.recordLate(
        id,
        { hop, provider: this.provider, model, outcome: 'cancelled', started_at: startedAt, latency_ms: latency, error: { type: 'cancelled', message: 'the call was stopped: its job was ended while it ran' } },
        Date.now(),
        board(`called ${ref}`, `stopped after ${latency} ms: the job was ended while its call ran`),
      );
      this.attempts.info({ job: id, provider: this.provider, model, hop, outcome: 'cancelled', latency_ms: latency }, 'attempt');
      if (ended === 'expired') throw new JobEnded('expired: the job passed its deadline while its call ran');
      return `${ended ?? 'ended'}: the call was stopped when the job was ${ended ?? 'ended'}`;
    }
    if (!result || (!result.ok && shutdown?.aborted)) {
      // Shutting down: this hop is not done, and not failed. Put it back for another worker now
      // rather than leave it to the stalled check.
      await this.afterCall(id, [giveBack(), reservation.holds.length > 0 ? this.deps.budgets.release(reservation) : undefined]);
      await store.settle(id, hop, null, { status: 'retry' }, Date.now(), board('handed back to the queue: its worker is shutting down'));
      log.info({ job: id, provider: this.provider, hop }, 'hop handed back at shutdown');
      return this.waitOnQueue(job, token, 0);
    }
    const latency = Math.round(performance.now() - t0);
    const error = result.ok ? null : result.error;
    // A timeout under a deadline-shortened limit is the deadline's doing (undici's timers are coarse,
    // so the clock may still read a moment before it).
    const cutByDeadline = error?.type === 'timeout' && timeoutMs < settings.timeout_ms;
    const timeoutCause = error?.type === 'timeout' && !cutByDeadline ? this.timeoutCause(request, settings.timeout_ms) : undefined;
    // A provider asking for a day's pause is not obeyed for a day: a pause is capped.
    const pauseMs = error?.type === 'rate_limited' ? Math.min(error.retryAfterMs ?? settings.default_retry_after_ms, settings.max_retry_after_ms) : 0;
    // What a failure says about the provider: a timeout the request's own size explains says
    // nothing; any other timeout is held against the provider, but blamed on its tenant until
    // another tenant's call corroborates it (see breakerRecord.lua).
    const outcome = cutByDeadline || timeoutCause === 'request_size' ? 'neutral' : breakerOutcome(error);
    await this.afterCall(id, [
      ticket
        ? breakers.record(this.provider, ticket, outcome, { throttledUntil: Date.now() + pauseMs, ...(trialToken && { token: trialToken }), ...(timeoutCause === 'provider' && { blame: claim.tenant }) })
        : undefined,
      reservation.holds.length > 0 ? this.deps.budgets.settle(reservation, result.ok ? result.usage : null) : undefined,
    ]);
    if (cutByDeadline) {
      await store.end(id, 'expired');
      // The call was made (and may be billed): the ledger shows it, cut at the deadline.
      await store.recordLate(
        id,
        { hop, provider: this.provider, model, outcome: 'cancelled', started_at: startedAt, latency_ms: latency, error: { ...toJobError(error!), message: "the call was cut at the job's deadline" } },
        Date.now(),
        board(`called ${ref}`, `cut after ${latency} ms at the job's deadline`),
      );
      this.attempts.info({ job: id, provider: this.provider, model, hop, outcome: 'expired', latency_ms: latency }, 'attempt');
      throw new JobEnded("expired: the call was cut at the job's deadline");
    }

    const attempt: Attempt = { hop, provider: this.provider, model, outcome: 'succeeded', started_at: startedAt, latency_ms: latency };
    // What follows a settle, whichever way it was sent: the attempt's metrics, stats and log line.
    const recorded = async (settled: Settled) => {
      const applied = settled === 'applied';
      // Ended meanwhile: the answer is dropped, but the call and what it cost are recorded.
      if (settled === 'ended') await store.recordLate(id, { ...attempt, outcome: 'discarded' }, Date.now(), board(`called ${ref}`, `${outcomeLine(attempt)}; discarded: the job had already ended`));
      this.observe(attempt, applied, claim.createdAt);
      this.deps.stats?.seen({
        provider: this.provider, model, latencyMs: latency, completionTokens: attempt.usage?.completion_tokens,
        health: result.ok ? 'success' : outcome === 'failure' ? 'failure' : 'neutral',
        fellBack: attempt.outcome === 'fallback', alias: claim.alias, firstHop: hop === 0,
      });
      if (error?.type === 'provider_auth') {
        log.error({ provider: this.provider, status: error.status }, 'the provider rejected our credentials: check its api_key');
      }
      this.attempts.info(
        {
          job: id, provider: this.provider, model, hop, outcome: attempt.outcome, latency_ms: latency,
          tokens: attempt.usage?.total_tokens, cost_usd: attempt.cost_usd ?? undefined, error: attempt.error?.type, status: attempt.error?.status,
          // The raw socket error (it names addresses) is for operators; the job's ledger has the kind.
          ...(error?.detail && { detail: error.detail }),
          ...(claim.rerun && { rerun: true }), ...(!applied && { discarded: 'job already ended (cancelled or expired)' }),
        },
        'attempt',
      );
    };
    if (result.dropped) attempt.dropped = result.dropped;
    if (streaming) attempt.stream = { chunks: result.streamed ?? 0, ...(result.firstChunkMs !== undefined && { first_chunk_ms: result.firstChunkMs }) };
    let settled: Settled;
    let requeue = false;
    let answer: HopResult;
    let failure: string | undefined;
    if (result.ok) {
      if (result.usage) attempt.usage = result.usage;
      attempt.cost_usd = this.deps.pricing.cost(this.provider, model, result.usage);
      const settlement = { status: 'succeeded', result: result.completion, usage: result.usage, cost_usd: attempt.cost_usd } as const;
      // The hop's target is its job's name on the board; what it did is its log's last line.
      answer = outcomeLine(attempt);
      const lines = board(`called ${ref}`, answer);
      const riders = this.deps.riders;
      if (riders && bullKey) {
        // The settle goes with BullMQ's finish of this hop, which follows this return: the rest of
        // the attempt's bookkeeping waits for its answer.
        void store.settleOnFinish(riders, id, hop, attempt, settlement, lines).then(recorded).catch((err: Error) => log.error({ job: id, hop, err: err.message }, 'a settle handed to its hop\'s finish failed when sent alone: the job is left as it was'));
        return answer;
      }
      settled = await store.settle(id, hop, attempt, settlement, Date.now(), lines);
    } else {
      const err = result.error;
      attempt.error = toJobError(err);
      if (timeoutCause) attempt.error.cause = timeoutCause;
      // Every process holds off this provider for as long as it asked: its queue pauses, and hops
      // already taken find it throttled at admission.
      if (pauseMs > 0) await this.deps.queues.get(this.provider).rateLimit(pauseMs);
      const streamed = result.streamed ?? 0;
      if (streamed > 0) {
        // Chunks already reached the caller: no other target may answer instead.
        attempt.outcome = 'failed';
        const jobError = { ...attempt.error, message: `the stream broke after ${streamed} chunk${streamed === 1 ? '' : 's'}: ${err.message}` };
        settled = await store.settle(id, hop, attempt, { status: 'failed', error: jobError }, Date.now(), board(`called ${ref} (streaming)`, outcomeLine(attempt), `the job failed: its stream broke after ${streamed} chunks`));
        answer = 'failed';
        failure = `${jobError.type}${jobError.status ? ` ${jobError.status}` : ''}: ${jobError.message}`;
      } else if (err.retryable && next) {
        attempt.outcome = 'fallback';
        settled = await this.handOn(id, hop, next, priority, attempt, bullKey, claim.alias);
        answer = `fell back to ${next}: ${reasonOf(attempt.error)}`;
      } else if (err.type === 'rate_limited') {
        // Rate limited on the last target: the job waits for the pause instead of failing.
        attempt.outcome = 'rate_limited';
        settled = await store.settle(id, hop, attempt, { status: 'retry' }, Date.now(), board(`called ${ref}`, outcomeLine(attempt), `waits ${pauseMs} ms on this queue`));
        requeue = settled === 'applied';
        answer = 'rate limited';
      } else {
        attempt.outcome = 'failed';
        const jobError = err.retryable
          ? { ...attempt.error, message: `all ${claim.chain.length} targets failed; last: ${err.message}` }
          : attempt.error;
        settled = await store.settle(id, hop, attempt, { status: 'failed', error: jobError }, Date.now(), board(`called ${ref}`, outcomeLine(attempt), 'the job failed'));
        answer = 'failed';
        failure = `${jobError.type}${jobError.status ? ` ${jobError.status}` : ''}: ${jobError.message}`;
      }
    }
    await recorded(settled);
    if (requeue) await this.waitOnQueue(job, token, pauseMs);
    if (settled !== 'applied') return describeUnsettled(settled);
    // The job failed: so does its hop, in BullMQ's failed state, with the job's error (and no retry).
    if (failure) throw new JobEnded(failure);
    return answer;
  }

  /**
   * Puts this hop back on its queue until `ms` from now. A delayed job also leaves BullMQ a marker
   * due at that time, which wakes workers blocked on an idle queue when the wait is over.
   */
  private async waitOnQueue(job: Job<HopData>, token: string | undefined, ms: number): Promise<never> {
    await job.moveToDelayed(Date.now() + ms, token);
    throw new DelayedError();
  }

  private observe(attempt: Attempt, applied: boolean, createdAt: number): void {
    const m = this.deps.metrics;
    if (!m) return;
    m.attempts.inc({ provider: this.provider, outcome: attempt.outcome, reason: attempt.error?.type ?? 'ok' });
    m.providerLatency.observe({ provider: this.provider }, attempt.latency_ms / 1000);
    if (!applied) return;
    if (attempt.outcome === 'succeeded' || attempt.outcome === 'failed') m.jobsFinished.inc({ status: attempt.outcome, provider: this.provider });
    if (attempt.outcome === 'succeeded' && attempt.hop === 0) m.brokerOverhead.observe(Math.max(0, Date.now() - createdAt - attempt.latency_ms) / 1000);
  }

  /**
   * What a call that was made tells its breaker and budgets. Best effort: the call happened, and a
   * failure here (Redis slow to answer, say) must not fail the hop, whose retry would call the
   * provider a second time. The breaker misses one outcome; a budget keeps its estimate until its
   * window ends.
   */
  private async afterCall(id: string, steps: (Promise<unknown> | undefined)[]): Promise<void> {
    for (const step of await Promise.allSettled(steps)) {
      if (step.status === 'rejected') this.deps.log.warn({ job: id, provider: this.provider, err: (step.reason as Error).message }, "a call's breaker or budget bookkeeping failed; the job goes on regardless");
    }
  }

  /**
   * Whether a request that timed out asked for more than the provider could write in its timeout
   * at the slowest rate still called normal (`breaker.min_tokens_per_s`). A request with no max
   * tokens gives no such excuse.
   */
  private timeoutCause(request: ChatRequest, timeoutMs: number): 'request_size' | 'provider' {
    const asked = Number(request.max_completion_tokens ?? request.max_tokens);
    if (!Number.isFinite(asked) || asked <= 0) return 'provider';
    return (asked / this.deps.config.breaker.min_tokens_per_s) * 1000 > timeoutMs ? 'request_size' : 'provider';
  }

  private client(): ProviderClient {
    const client = this.deps.clients.get(this.provider);
    if (!client) throw new Error(`this worker has no client for provider "${this.provider}"`);
    return client;
  }

  /**
   * A streaming call: each batch of chunks is stamped as one `chat.completion.chunk` of this job
   * (its id, the call's model and start) and appended to the job's stream before the next is read,
   * so the stream's pace is the slower of the provider and Redis.
   */
  private async streamCall(id: string, request: ChatRequest, model: string, opts: { timeoutMs: number; signal?: CallStop }) {
    const completionId = `chatcmpl-${id.slice('job_'.length)}`;
    const created = Math.floor(Date.now() / 1000);
    let seq = 0;
    return this.client().stream(request, model, {
      ...opts,
      completionId,
      onChunks: async (chunks) => {
        // In OpenAI's own key order, so the relayed bytes read as OpenAI's do.
        const stamped = chunks.map(({ choices, usage, system_fingerprint: fingerprint, ...rest }) =>
          JSON.stringify({ id: completionId, object: 'chat.completion.chunk', created, model, ...(fingerprint !== undefined && { system_fingerprint: fingerprint }), ...rest, choices, ...(usage !== undefined && { usage }) }));
        await this.deps.streams!.append(id, seq + 1, stamped);
        seq += stamped.length;
      },
    });
  }

  /** Records `attempt` and hands the job to the next target's queue. */
  private async handOn(id: string, hop: number, nextRef: string, priority: number, attempt: Attempt, bullKey: string, alias: string | null): Promise<'applied' | 'moved' | 'ended'> {
    const nextQueue = queueName(splitTarget(nextRef).provider);
    const lines = [...(attempt.outcome === 'skipped' ? [] : [`called ${attempt.provider}/${attempt.model}`]), outcomeLine(attempt), `handed to ${nextQueue} as hop ${hop + 1} (${nextRef})`];
    // A least-busy job's lease moves with it to its next target.
    const nextLease = alias && this.deps.config.models[alias]?.strategy === 'least_busy' ? this.deps.store.keys.inflight(nextRef, this.deps.store.keys.idShard(id)) : '';
    const settled = await this.deps.store.settle(id, hop, attempt, { status: 'queued' }, Date.now(), { bullKey, lines }, nextLease);
    if (attempt.outcome === 'skipped') {
      this.deps.metrics?.attempts.inc({ provider: this.provider, outcome: 'skipped', reason: attempt.error?.type ?? 'ok' });
      this.deps.stats?.seen({ provider: this.provider, model: attempt.model, health: 'neutral', latencyMs: 0, fellBack: true, alias, firstHop: hop === 0 });
    }
    if (settled === 'applied') await this.deps.queues.enqueueHop(splitTarget(nextRef).provider, id, hop + 1, priority);
    if (attempt.outcome === 'skipped') {
      this.attempts.info({ job: id, provider: this.provider, hop, outcome: 'skipped', error: 'circuit_open' }, 'attempt');
    }
    return settled;
  }

  /**
   * The record is at a later hop than this BullMQ job: a crash came between settling a fallback and
   * enqueueing the next hop, and this is the stalled re-run. Enqueue that hop (deterministic id, so
   * a no-op if it is already there).
   */
  private async resumeLaterHop(id: string, staleHop: number): Promise<void> {
    const job = await this.deps.store.get(id);
    if (!job || job.status !== 'queued' || job.hop <= staleHop) return;
    const ref = job.chain[job.hop];
    if (!ref) return;
    this.deps.log.warn({ job: id, hop: job.hop, bull_job: hopJobId(id, job.hop) }, 're-enqueueing a hop lost in a crash');
    await this.deps.queues.enqueueHop(splitTarget(ref).provider, id, job.hop, job.priority);
  }
}
