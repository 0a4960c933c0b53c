import { closeSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';

/** One line of the --out file. */
export interface ResultLine {
  line: number;
  custom_id?: string;
  id: string | null;
  status: string;
  result: unknown;
  usage: unknown;
  cost_usd: number | null;
  error: unknown;
}

/** What the results already written say, so a resumed run neither waits for nor rewrites those lines. */
export interface Tally {
  lines: Set<number>;
  succeeded: number;
  failed: number;
  costUsd: number;
  /** Whether any result carried a cost (a null cost means no known price, not zero). */
  priced: boolean;
}

export class ResultsError extends Error {}

const emptyTally = (): Tally => ({ lines: new Set(), succeeded: 0, failed: 0, costUsd: 0, priced: false });

export function count(tally: Tally, result: Pick<ResultLine, 'line' | 'status' | 'cost_usd'>): void {
  tally.lines.add(result.line);
  if (result.status === 'succeeded') tally.succeeded += 1;
  else tally.failed += 1;
  if (typeof result.cost_usd === 'number') {
    tally.costUsd += result.cost_usd;
    tally.priced = true;
  }
}

/**
 * Opens the results file for appending (emptied when `fresh`), first cutting off a torn last line (a
 * crash mid-write leaves bytes after the last newline; that line's job is simply waited for again),
 * and tallies the rest.
 */
export function openResults(path: string, fresh: boolean): { writer: ResultWriter; tally: Tally } {
  const fd = openSync(path, 'a+');
  const bytes = fresh ? Buffer.alloc(0) : readFileSync(fd);
  const end = bytes.lastIndexOf(0x0a) + 1;
  if (fresh || end < bytes.length) ftruncateSync(fd, end);
  const tally = emptyTally();
  bytes
    .subarray(0, end)
    .toString('utf8')
    .split('\n')
    .forEach((raw, i) => {
      if (raw === '') return;
      let parsed: ResultLine;
      try {
        parsed = JSON.parse(raw) as ResultLine;
      } catch {
        closeSync(fd);
        throw new ResultsError(`${path} line ${i + 1} is not JSON; repair it or pass --restart`);
      }
      count(tally, parsed);
    });
  return { writer: new ResultWriter(fd), tally };
}

/**
 * Each result is one synchronous append of a whole line: nothing is buffered in this process, so a
 * kill loses at most the line being written, which openResults cuts off on the next run.
 */
export class ResultWriter {
  constructor(private readonly fd: number) {}

  write(result: ResultLine): void {
    writeSync(this.fd, `${JSON.stringify(result)}\n`);
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}
