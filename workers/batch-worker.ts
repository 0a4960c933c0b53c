import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type BatchLineError, type BatchStore, batchLeaseMs } from '../src/batches/batch-store.js';
import type { FileStore } from '../src/batches/file-store.js';
import { IntakeError } from '../src/intake/intake-error.js';
import type { JobIntake } from '../src/intake/job-intake.js';
import { type JobBody, jobBodySchema } from '../src/intake/job-request.js';
import type { Logger } from '../src/log.js';
import { BATCH_QUEUE, type BatchStep, type BatchSteps } from '../src/queues/batch-steps.js';
import type { ProviderQueues } from '../src/queues/provider-queues.js';
import { RouteError, type Router } from '../src/routing/router.js';
import type { JobRecord } from '../src/store/job-record.js';
import { isTerminal, splitTarget } from '../src/store/job-record.js';
import type { JobStore } from '../src/store/job-store.js';

/** Lines validated, enqueued and finalized per round: bounded memory whatever the batch size. */
const CHUNK = 1000;
/** A failed validation keeps this many line errors; the count of the rest is in the last one. */
const MAX_ERRORS = 1000;
const SWEEP_EVERY_MS = 1000;

interface Line {
  custom_id?: unknown;
  method?: unknown;
  url?: unknown;
  body?: { model?: unknown } & Record<string, unknown>;
}

/**
 * Runs OpenAI-shaped batches through Switchyard jobs: validate the input file (every line, before any
 * job exists), turn each line into a job routed by its `body.model` (with fallback), and when the
 * last job ends (the job scripts count them into the batch) write the output and error files.
 * Every step is a BullMQ job with a deterministic id and is safe to run again after a crash.
 */
export class BatchWorker {
  private worker: Worker<BatchStep> | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      steps: BatchSteps; prefix: string; batches: BatchStore; files: FileStore; store: JobStore; intake: JobIntake;
      router: Router; queues: ProviderQueues; log: Logger;
      /** Sends a finished batch's event to where its tenant's batch events go, if anywhere. */
      announce?: (tenant: string, batchId: string) => Promise<void>;
    },
  ) {}

  /** `connection` is a worker's: BullMQ blocks on it, so it must have no command timeout. */
  start(connection: Redis): void {
    this.worker = new Worker<BatchStep>(BATCH_QUEUE, (job) => this.run(job), { connection, prefix: this.deps.prefix, concurrency: 4, drainDelay: 1 });
    this.worker.on('error', (err) => this.deps.log.error({ err: err.message }, 'batch worker error'));
    this.sweeper = setInterval(() => void this.sweep().catch((err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'batch sweep failed')), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.worker?.close();
  }

  /** Batches whose last job has ended get finalized. */
  private async sweep(): Promise<void> {
    for (const id of await this.deps.batches.takeDone()) {
      await this.deps.steps.schedule('finalize', id);
      await this.deps.batches.clearDone(id);
    }
  }

  private async run(job: Job<BatchStep>): Promise<void> {
    const { step, batch } = job.data;
    if (step === 'start') return this.startBatch(batch);
    if (step === 'cancel') return this.cancelBatch(batch);
    return this.finalize(batch);
  }

  /** A line as a job body, or the reason it cannot be one. */
  private toJob(raw: string, endpoint: string, batch: string, expiresAt: number): { body: JobBody; customId: string } | Omit<BatchLineError, 'line'> {
    let line: Line;
    try {
      line = JSON.parse(raw) as Line;
    } catch {
      return { code: 'invalid_json', message: 'line is not valid JSON', param: null };
    }
    if (typeof line.custom_id !== 'string' || line.custom_id === '') return { code: 'invalid_request', message: 'custom_id must be a non-empty string', param: 'custom_id' };
    if (line.method !== 'POST') return { code: 'invalid_request', message: 'method must be POST', param: 'method' };
    if (line.url !== endpoint) return { code: 'invalid_request', message: `url must be ${endpoint}, the batch's endpoint`, param: 'url' };
    if (!line.body || typeof line.body !== 'object' || typeof line.body.model !== 'string') {
      return { code: 'invalid_request', message: 'body must be an object with a model', param: 'body.model' };
    }
    const { model, ...request } = line.body;
    const parsed = jobBodySchema.safeParse({
      model,
      request,
      metadata: { batch_id: batch, custom_id: line.custom_id.slice(0, 512) },
      deadline_s: Math.max(1, Math.ceil((expiresAt - Date.now()) / 1000)),
    });
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const path = issue.path.join('.').replace(/^request/, 'body');
      return { code: 'invalid_request', message: `${path}: ${issue.message}`, param: path };
    }
    try {
      this.deps.router.resolve(parsed.data, '');
    } catch (err) {
      // Only what a line says is checked here; budgets and windows are the tenant's, checked with its estimate.
      if (err instanceof RouteError && err.status === 400 && err.code !== 'context_length_exceeded') return { code: 'invalid_request', message: err.message, param: 'body.model' };
      if (!(err instanceof RouteError)) throw err;
    }
    return { body: parsed.data, customId: line.custom_id };
  }

  private async startBatch(id: string): Promise<void> {
    const { batches, files, intake, log } = this.deps;
    const b = await batches.get(id);
    if (!b || (b.status !== 'validating' && b.status !== 'in_progress' && b.status !== 'cancelling')) return;
    if (b.status === 'cancelling') return this.stopStarting(id);
    const endpoint = b.endpoint!;
    const expiresAt = Number(b.expires_at) * 1000;
    const fileId = b.input_file_id!;
    if (!(await files.get(fileId, b.tenant!))) {
      // Deleted (or expired) before its lines became jobs: nothing can run, and nothing is left waiting.
      const error: BatchLineError = { code: 'input_file_not_found', message: `the input file ${fileId} no longer exists`, param: 'input_file_id', line: null };
      const made = await batches.jobCount(id);
      if (made === 0) {
        if (!(await batches.move(id, ['validating', 'in_progress'], 'failed', 'failed_at', { errors: JSON.stringify([error]) })).moved) return this.stopStarting(id);
        await batches.markStartDone(id);
        await intake.releaseBatch(b.tenant!, id);
        await this.deps.announce?.(b.tenant!, id);
        return;
      }
    }

    if (b.status === 'validating') {
      // Every line is checked before any job exists: a batch runs whole or not at all.
      const errors: BatchLineError[] = [];
      let bad = 0;
      let total = 0;
      let estimate = 0;
      const seen = new Set<string>();
      for await (const { first, lines } of files.chunks(fileId, CHUNK)) {
        lines.forEach((raw, k) => {
          // Blank lines are kept in the file only so that line numbers stay the file's own.
          if (raw === '') return;
          total++;
          const result = this.toJob(raw, endpoint, id, expiresAt);
          let error = 'body' in result ? null : result;
          if (!error && 'customId' in result) {
            if (seen.has(result.customId)) error = { code: 'duplicate_custom_id', message: `custom_id ${result.customId} appears more than once`, param: 'custom_id' };
            seen.add(result.customId);
            try {
              estimate += intake.estimate(b.tenant!, result.body);
            } catch (err) {
              if (!(err instanceof IntakeError)) throw err;
              error = { code: err.code ?? 'invalid_request', message: err.message, param: 'body.model' };
            }
          }
          if (error && ++bad <= MAX_ERRORS) errors.push({ ...error, line: first + k });
        });
      }
      if (total === 0) errors.push({ code: 'empty_file', message: 'the input file has no lines', param: null, line: null });
      if (errors.length === 0) {
        // The lines were admitted with the batch; their spend is known only now.
        try {
          await intake.holdBatchSpend(b.tenant!, id, estimate, batchLeaseMs(expiresAt));
        } catch (err) {
          if (!(err instanceof IntakeError)) throw err;
          errors.push({ code: err.code ?? 'limit_exceeded', message: err.message, param: null, line: null });
        }
      }
      if (errors.length > 0) {
        if (bad > MAX_ERRORS) errors.push({ code: 'too_many_errors', message: `${bad - MAX_ERRORS} more lines are invalid`, param: null, line: null });
        // Cancelled while it was being validated: the cancel wins, and nothing ran.
        if (!(await batches.move(id, ['validating'], 'failed', 'failed_at', { errors: JSON.stringify(errors) })).moved) return this.stopStarting(id);
        await batches.markStartDone(id);
        await intake.releaseBatch(b.tenant!, id);
        log.info({ batch: id, invalid_lines: bad }, 'batch refused at validation');
        await this.deps.announce?.(b.tenant!, id);
        return;
      }
      if (!(await batches.move(id, ['validating'], 'in_progress', 'in_progress_at', { total })).moved) return this.stopStarting(id);
    }

    // Enqueue line by line chunk; a re-run after a crash resumes where `enqueued` stopped, and the
    // idempotency key per chunk returns the jobs a half-finished chunk had already made.
    const done = Number((await batches.get(id))?.enqueued ?? 0);
    for await (const { first, lines } of files.chunks(fileId, CHUNK)) {
      const last = first + lines.length - 1;
      if (last <= done) continue;
      if ((await batches.get(id))?.status === 'cancelling') break;
      const parsed = lines.flatMap((raw, k) => (raw === '' ? [] : [{ line: first + k, ...(this.toJob(raw, endpoint, id, expiresAt) as { body: JobBody; customId: string }) }]));
      const jobs = await intake.submitMany(parsed.map((p) => p.body), { tenant: b.tenant!, idempotencyKey: `${id}-${first}`, batch: id }).catch((err: unknown) => {
        // Validated a moment ago; a model removed from the config since would land here.
        if (err instanceof IntakeError) throw new Error(`batch ${id} lines ${first}..: ${err.message}`);
        throw err;
      });
      await batches.recordLines(id, last, jobs.map((j, k) => ({ line: parsed[k]!.line, jobId: j.id, customId: parsed[k]!.customId })));
    }
    if ((await batches.get(id))?.status === 'cancelling') {
      await this.stopStarting(id);
    } else {
      await batches.markStartDone(id);
      // The file went away part way (deleted): the batch is whole at the jobs it made.
      const made = await batches.jobCount(id);
      const total = Number((await batches.get(id))?.total ?? 0);
      if (made < total) {
        log.warn({ batch: id, made, total }, 'batch input file vanished while its lines were enqueued; the batch runs the lines it had');
        await batches.set(id, { total: made });
        await intake.releaseBatch(b.tenant!, id);
        await batches.checkDone(id);
      }
    }
    log.info({ batch: id }, 'batch enqueued');
  }

  /**
   * The start step has stopped making jobs because the batch is being cancelled: it says so, then
   * hands over to the cancel step, which may now count what was made. (The API's cancel schedules
   * that step itself only when it sees the start step done; between the two, one always does.)
   */
  private async stopStarting(id: string): Promise<void> {
    await this.deps.batches.markStartDone(id);
    await this.deps.steps.schedule('cancel', id);
  }

  private async cancelBatch(id: string): Promise<void> {
    const { batches, store, queues } = this.deps;
    const b = await batches.get(id);
    // Only a cancelling batch whose start step has stopped: jobs it made later would be missed.
    if (!b || b.status !== 'cancelling' || b.start_done !== '1') return;
    const enqueued = Number(b.enqueued ?? 0);
    for (let from = 1; from <= enqueued; from += CHUNK) {
      const lines = await batches.lines(id, from, Math.min(enqueued, from + CHUNK - 1));
      const jobs = await store.getMany(lines.map((l) => l.jobId));
      await Promise.all(
        jobs.map(async (job) => {
          if (!job || isTerminal(job.status)) return;
          const outcome = await store.end(job.id, 'cancelled');
          const ref = job.chain[job.hop];
          if (outcome.kind === 'ended' && ref) await queues.removeHop(splitTarget(ref).provider, job.id, job.hop);
        }),
      );
    }
    // Lines never enqueued will never end: the batch is whole at the jobs it made.
    const made = await batches.jobCount(id);
    if (b.total === null || made < Number(b.total)) await batches.set(id, { total: made });
    await this.deps.intake.releaseBatch(b.tenant!, id);
    await batches.checkDone(id);
  }

  private async finalize(id: string): Promise<void> {
    const { batches, files, store, log } = this.deps;
    const b = await batches.get(id);
    if (!b) return;
    // Already final: a crash came after marking it, so only the event may be owed (sent once by id).
    if (!['in_progress', 'cancelling', 'finalizing'].includes(b.status!)) return this.deps.announce?.(b.tenant!, id);
    if (b.status === 'in_progress') {
      // A cancel that came in the meantime decides how this batch ends.
      const moved = await batches.move(id, ['in_progress'], 'finalizing', 'finalizing_at');
      if (!moved.moved && moved.previous !== 'finalizing') b.status = moved.previous;
    }
    const cancelling = b.status === 'cancelling';
    const total = Number(b.total ?? 0);
    // Jobs are kept by their line in the file (blank lines have none), up to the last line enqueued.
    const lastLine = Number(b.enqueued ?? 0);
    const results = async function* (want: 'output' | 'error') {
      for (let from = 1; from <= lastLine; from += CHUNK) {
        const lines = await batches.lines(id, from, Math.min(lastLine, from + CHUNK - 1));
        const jobs = await store.getMany(lines.map((l) => l.jobId));
        yield lines.flatMap((l, k) => {
          const job = jobs[k];
          const ok = job?.status === 'succeeded';
          if ((want === 'output') !== ok) return [];
          return [JSON.stringify(outputLine(l.customId, l.jobId, job ?? null))];
        });
      }
    };
    const output = await files.write(b.tenant!, `${id}_output.jsonl`, 'batch_output', results('output'));
    const errors = await files.write(b.tenant!, `${id}_error.jsonl`, 'batch_output', results('error'));
    const fileIds = { ...(output && { output_file_id: output.id }), ...(errors && { error_file_id: errors.id }) };
    const expired = Date.now() >= Number(b.expires_at) * 1000;
    const end = cancelling ? { status: 'cancelled' as const, stamp: 'cancelled_at' as const } : expired && errors ? { status: 'expired' as const, stamp: 'expired_at' as const } : { status: 'completed' as const, stamp: 'completed_at' as const };
    await batches.move(id, [cancelling ? 'cancelling' : 'finalizing'], end.status, end.stamp, fileIds);
    await this.deps.intake.releaseBatch(b.tenant!, id);
    log.info({ batch: id, total, output: output?.id, errors: errors?.id }, 'batch finalized');
    await this.deps.announce?.(b.tenant!, id);
  }
}

/** One line of a batch's output or error file, as OpenAI writes them. */
function outputLine(customId: string, jobId: string, job: JobRecord | null) {
  const id = `batch_req_${jobId.slice('job_'.length)}`;
  if (job?.status === 'succeeded') {
    return { id, custom_id: customId, response: { status_code: 200, request_id: jobId, body: job.result }, error: null };
  }
  const error = job?.error ?? { type: 'not_found', message: 'the job for this line no longer exists' };
  const code = job?.status === 'expired' ? 'batch_expired' : job?.status === 'cancelled' ? 'batch_cancelled' : error.type;
  const status = error.status ?? (job?.status === 'failed' ? 500 : null);
  return {
    id,
    custom_id: customId,
    response: status === null ? null : { status_code: status, request_id: jobId, body: { error: { message: error.message, type: error.type, code } } },
    error: { code, message: error.message },
  };
}
