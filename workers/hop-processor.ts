import type { Logger } from '../src/log.js';
import type { ProviderClient } from '../src/providers/client.js';
import type { ProviderError } from '../src/providers/errors.js';
import { hopJobId, type ProviderQueues } from '../src/queues/provider-queues.js';
import { type Attempt, type JobError, splitTarget } from '../src/store/job-record.js';
import type { JobStore } from '../src/store/job-store.js';

export interface HopProcessorDeps {
  store: JobStore;
  queues: ProviderQueues;
  clients: Map<string, ProviderClient>;
  log: Logger;
}

const toJobError = (e: ProviderError): JobError => ({
  type: e.type,
  message: e.message,
  ...(e.status !== undefined && { status: e.status }),
  ...(e.retryAfterMs !== undefined && { retry_after_ms: e.retryAfterMs }),
});

/**
 * Runs one hop of one job: claim it on the record, call the provider, settle the record, and on a
 * retryable failure hand the job to the next target's queue. Every step is guarded by the record,
 * so running the same hop twice (a duplicate or a stalled re-run) cannot end a job twice.
 */
export class HopProcessor {
  constructor(private readonly deps: HopProcessorDeps) {}

  async process(id: string, hop: number, priority: number): Promise<void> {
    const { store, log } = this.deps;
    const claim = await store.start(id, hop);
    if (claim.kind === 'moved') return this.resumeLaterHop(id, hop);
    if (claim.kind !== 'ok') {
      log.debug({ job: id, hop, claim: claim.kind }, 'hop skipped');
      return;
    }
    const ref = claim.chain[hop];
    if (!ref) throw new Error(`job ${id} has no target for hop ${hop}`);
    const target = splitTarget(ref);
    const client = this.deps.clients.get(target.provider);
    if (!client) throw new Error(`this worker has no client for provider "${target.provider}"`);

    const startedAt = Date.now();
    const t0 = performance.now();
    const result = await client.complete(claim.request as never, target.model);
    const latency = Math.round(performance.now() - t0);
    const attempt: Attempt = { hop, provider: target.provider, model: target.model, outcome: 'succeeded', started_at: startedAt, latency_ms: latency };

    let applied: boolean;
    if (result.ok) {
      if (result.usage) attempt.usage = result.usage;
      applied = await store.settle(id, hop, attempt, { status: 'succeeded', result: result.completion, usage: result.usage, cost_usd: null });
    } else {
      attempt.error = toJobError(result.error);
      const next = claim.chain[hop + 1];
      if (result.error.retryable && next) {
        attempt.outcome = 'fallback';
        applied = await store.settle(id, hop, attempt, { status: 'queued' });
        if (applied) await this.deps.queues.enqueueHop(splitTarget(next).provider, id, hop + 1, priority);
      } else {
        attempt.outcome = 'failed';
        const error = result.error.retryable
          ? { ...attempt.error, message: `all ${claim.chain.length} targets failed; last: ${result.error.message}` }
          : attempt.error;
        applied = await store.settle(id, hop, attempt, { status: 'failed', error });
      }
    }
    log.info(
      {
        job: id, provider: target.provider, model: target.model, hop, outcome: attempt.outcome, latency_ms: latency,
        tokens: attempt.usage?.total_tokens, error: attempt.error?.type, status: attempt.error?.status,
        ...(claim.rerun && { rerun: true }), ...(!applied && { discarded: 'job already ended (cancelled or expired)' }),
      },
      'attempt',
    );
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
