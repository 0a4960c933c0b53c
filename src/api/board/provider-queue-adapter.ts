import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { Job } from 'bullmq';
import type { Config } from '../../config/schema.js';
import type { HopData, ProviderQueues } from '../../queues/provider-queues.js';
import { type JobRecord, splitTarget } from '../../store/job-record.js';
import type { JobStore, ReopenRefusal } from '../../store/job-store.js';

type AdapterOptions = ConstructorParameters<typeof BullMQAdapter>[1];

/** Refused board actions answer with this status (Bull Board passes `statusCode` and `message` on). */
class Refused extends Error {
  readonly statusCode = 409;
}

/** States whose hops still carry a job: removing one would leave the job queued for ever. */
const UNFINISHED = new Set(['waiting', 'prioritized', 'delayed', 'paused', 'wait']);

/**
 * Bull Board's view of one provider queue. A hop job in Redis carries only `{id, hop}` (the prompt,
 * and everything else, stays in the job record); here each one shown is named and described from
 * its record (task → target, alias, tenant, priority, the record's URL), so an operator reads what
 * it is, at no cost to the hot path. Actions that would strand or double-end a job are made safe or
 * refused: a retry re-opens the job's record first, removing a waiting hop cancels its job, and
 * emptying a queue is refused.
 */
export class ProviderQueueAdapter extends BullMQAdapter {
  constructor(
    private readonly provider: string,
    private readonly queues: ProviderQueues,
    private readonly store: JobStore,
    private readonly config: Pick<Config, 'tasks'>,
    options: AdapterOptions,
  ) {
    // A completed hop has nothing to retry (its job ended or moved on): no retry button on it.
    const own = { allowCompletedRetries: false, externalJobUrl: (job: { data: unknown }) => ({ href: `/v1/jobs/${(job.data as HopData).id}`, displayText: 'job record' }) };
    super(queues.get(provider), { ...options, ...own } as AdapterOptions);
  }

  /** Only a real pause: a 429's Retry-After, a spent token budget, or a full rpm window (BullMQ's own read counts a limiter that never binds). */
  override async getActiveRateLimitTtl(): Promise<number> {
    return this.queues.pausedForMs(this.provider);
  }

  override async getJobs(...args: Parameters<BullMQAdapter['getJobs']>): ReturnType<BullMQAdapter['getJobs']> {
    const jobs = await super.getJobs(...args);
    // Retry-all takes its jobs from here: each one is guarded as a single job is.
    await this.describe(jobs as unknown as Job<HopData>[]);
    for (const job of jobs as unknown as Job<HopData>[]) this.guard(job);
    return jobs;
  }

  override async getJob(id: string): ReturnType<BullMQAdapter['getJob']> {
    const job = (await super.getJob(id)) as unknown as Job<HopData> | undefined;
    if (!job) return job as never;
    await this.describe([job]);
    this.guard(job);
    return job as never;
  }

  override async clean(status: Parameters<BullMQAdapter['clean']>[0], graceTimeMs: number): Promise<void> {
    if (UNFINISHED.has(status)) throw new Refused(`cleaning ${status} hops would leave their jobs queued for ever; cancel the jobs (POST /v1/jobs/:id/cancel) instead`);
    return super.clean(status, graceTimeMs);
  }

  override empty(): Promise<void> {
    return Promise.reject(new Refused('emptying a provider queue would leave its jobs queued for ever; cancel the jobs instead'));
  }

  override obliterate(): Promise<void> {
    return Promise.reject(new Refused('a provider queue is not obliterated from here: its jobs would be left without their hops'));
  }

  override addJob(): never {
    throw new Refused('hops are added by the broker for jobs it has accepted; submit a job with POST /v1/jobs');
  }

  /** Names and data from each hop's record; jobs whose record has gone keep what BullMQ has. */
  private async describe(jobs: Job<HopData>[]): Promise<void> {
    const records = await this.store.getMany(jobs.map((j) => j.data.id));
    jobs.forEach((job, i) => {
      const record = records[i];
      if (!record) return;
      const target = record.chain[job.data.hop] ?? '?';
      const what = record.task ?? record.model ?? 'default';
      job.name = `${what} → ${target}${job.data.hop > 0 ? ` (hop ${job.data.hop})` : ''}`;
      job.data = {
        id: record.id,
        hop: job.data.hop,
        task: record.task,
        alias: this.alias(record),
        target,
        tenant: record.tenant,
        priority: record.priority,
        job_status: record.status,
        record: `/v1/jobs/${record.id}`,
      } as unknown as HopData;
    });
  }

  private alias(record: JobRecord): string | null {
    if (record.routing?.alias) return record.routing.alias;
    if (record.model) return record.model;
    const rules = record.task && Object.hasOwn(this.config.tasks, record.task) ? this.config.tasks[record.task] : undefined;
    const only = rules?.length === 1 ? rules[0]!.model : undefined;
    return typeof only === 'string' ? only : null;
  }

  /**
   * A retry re-opens the job at this hop (the ledger records it) before BullMQ re-runs the hop, or
   * is refused saying why; removing a hop that still carries its job cancels the job first.
   */
  private guard(job: Job<HopData>): void {
    const { id, hop } = (job.data as unknown as { id: string; hop: number });
    const retry = job.retry.bind(job);
    job.retry = async (state) => {
      const record = await this.store.get(id);
      const target = record?.chain[hop];
      const { provider = this.provider, model = '' } = target ? splitTarget(target) : {};
      const reopened = await this.store.reopen(id, hop, { hop, provider, model, outcome: 'retried', started_at: Date.now(), latency_ms: 0, error: { type: 'manual_retry', message: 'retried by an operator from Bull Board' } });
      if (!reopened.ok) throw new Refused(refusal(id, hop, reopened.reason, reopened.detail));
      await job.log(`re-opened by an operator (retry ${reopened.reopened}): the job is queued at this hop again`);
      try {
        await retry(state);
      } catch {
        // The hop left its failed set meanwhile (cleaned, removed): the re-opened job gets a new one,
        // so it is never left queued with nothing to run it. Adding is idempotent by hop id.
        await this.queues.enqueueHop(this.provider, id, hop, record?.priority ?? 5);
      }
    };
    const remove = job.remove.bind(job);
    job.remove = async (opts) => {
      if (UNFINISHED.has(await job.getState())) await this.store.end(id, 'cancelled', Date.now(), 'cancelled by an operator: its hop was removed from its queue in Bull Board');
      return remove(opts);
    };
    job.updateData = () => Promise.reject(new Refused("a hop's data points at its job's record and is not edited here"));
  }
}

function refusal(id: string, hop: number, reason: ReopenRefusal, detail: string): string {
  switch (reason) {
    case 'missing':
      return `job ${id} has no record any more (it expired): there is nothing to retry`;
    case 'status':
      return detail === 'expired'
        ? `job ${id} expired (its deadline passed): a retry would only expire it again; submit it again`
        : `job ${id} is ${detail}, not failed: only a failed job can be retried`;
    case 'batch':
      return `job ${id} is a line of batch ${detail}, which has counted it: it cannot be retried on its own`;
    case 'deadline':
      return `job ${id} passed its deadline (${new Date(Number(detail)).toISOString()}): a retry would only expire it; submit it again`;
    case 'request':
      return `job ${id} no longer has its request: there is nothing to send again`;
    default:
      return `job ${id} failed at hop ${detail}, not at hop ${hop}: retry that hop`;
  }
}
