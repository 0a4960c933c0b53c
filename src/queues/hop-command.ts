import { Job, type Queue } from 'bullmq';
import { Packr, unpack } from 'msgpackr';
import type { HopData } from './provider-queues.js';

/** BullMQ's own addPrioritizedJob command for one hop, as Queue.add would send it. */
export interface HopCommand {
  /** The queue's keys: the same for every hop of the queue. */
  keys: string[];
  /** The hop's own three arguments (packed args, data, packed options). */
  args: (string | Buffer)[];
}

/** A hop's BullMQ options: only its id and priority (see ProviderQueues.hopOptions). */
export interface HopOptions {
  jobId: string;
  priority: number;
}

/** addPrioritizedJob takes three arguments after its keys. */
const HOP_ARGS = 3;
/** Where BullMQ's packed job arguments hold the job's timestamp. */
const TIMESTAMP_ARG = 3;

/** As BullMQ's backend packs a command's arguments. */
const packer = new Packr({ useRecords: false, encodeUndefinedAsNil: true });

/**
 * The command BullMQ would run to add this hop, built by BullMQ itself (its job, its options'
 * encoding, its keys) but not sent.
 */
export async function builtByBullmq(queue: Queue<HopData>, data: HopData, opts: HopOptions): Promise<HopCommand> {
  const job = new Job<HopData>(queue, 'hop', data, opts, opts.jobId);
  let command: HopCommand | undefined;
  const capture = {
    runCommand: (name: string, sent: (string | Buffer)[]) => {
      if (!name.startsWith('addPrioritizedJob:')) throw new Error(`BullMQ would add this hop with ${name}, not addPrioritizedJob`);
      command = { keys: sent.slice(0, -HOP_ARGS) as string[], args: sent.slice(-HOP_ARGS) };
      return Promise.resolve(opts.jobId);
    },
  };
  await queue.backend.addJobToTransaction(capture as unknown as Parameters<typeof queue.backend.addJobToTransaction>[0], job.asJSON(), opts.jobId);
  return command!;
}

const sameArg = (a: string | Buffer | undefined, b: string | Buffer | undefined) =>
  typeof a === 'string' || typeof b === 'string' ? a === b : a !== undefined && b !== undefined && a.equals(b);

/**
 * Builds one queue's hop commands. BullMQ builds each through a Job, its JSON and its options'
 * encoding: about 7 µs a hop, the largest single cost of a bulk request's jobs after garbage
 * collection. A hop's command varies only in its id, data, priority and timestamp, so it is
 * written here directly (about 4 µs), as BullMQ writes it: but only once the first hop, built both
 * ways, came out byte for byte the same. Should a BullMQ release build its adds any other way,
 * every hop is built by BullMQ, as before, and nothing is lost but the time.
 */
export class HopCommands {
  private checked: Promise<void> | undefined;
  /** The queue's keys, once the direct build has matched BullMQ's; undefined until then, or forever if it did not. */
  private keys: string[] | undefined;

  constructor(private readonly queue: Queue<HopData>) {}

  async build(data: HopData, opts: HopOptions): Promise<HopCommand> {
    if (this.keys) return this.direct(this.keys, data, opts, Date.now());
    if (!this.checked) {
      const first = builtByBullmq(this.queue, data, opts);
      this.checked = first.then((command) => this.check(command, data, opts), () => undefined);
      return first;
    }
    await this.checked;
    return this.keys ? this.direct(this.keys, data, opts, Date.now()) : builtByBullmq(this.queue, data, opts);
  }

  /** Turns the direct build on if it gives what BullMQ gave for the same hop at the same moment. */
  private check(bullmq: HopCommand, data: HopData, opts: HopOptions): void {
    const packed = bullmq.args[0];
    const decoded: unknown = Buffer.isBuffer(packed) ? unpack(packed) : undefined;
    const timestamp = Array.isArray(decoded) ? decoded[TIMESTAMP_ARG] : undefined;
    if (typeof timestamp !== 'number') return;
    const direct = this.direct(bullmq.keys, data, opts, timestamp);
    const same = direct.args.length === bullmq.args.length && direct.args.every((a, i) => sameArg(a, bullmq.args[i]));
    if (same) this.keys = bullmq.keys;
  }

  /**
   * addJobToTransaction's arguments for a prioritised job with no parent, repeat or deduplication
   * (the queue's key prefix, the id, the name, the timestamp, then six nils), its data as JSON, and
   * the options as the Job constructor completes them (`attempts: 0` first).
   */
  private direct(keys: string[], data: HopData, opts: HopOptions, timestamp: number): HopCommand {
    const args = packer.pack([this.queue.keys['']!, opts.jobId, 'hop', timestamp, null, null, null, null, null, null]);
    const options = packer.pack({ attempts: 0, jobId: opts.jobId, priority: opts.priority });
    return { keys, args: [args, JSON.stringify(data), options] };
  }
}
