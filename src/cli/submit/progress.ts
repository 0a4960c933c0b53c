import { Presets, SingleBar } from 'cli-progress';

export interface Counts {
  /** Non-blank lines in the file. */
  total: number;
  /** Lines that are jobs (not malformed), the most that can be submitted. */
  jobs: number;
  submitted: number;
  /** Lines with a result, in this run or an earlier one. */
  done: number;
  /** Results that are not `succeeded`. */
  failed: number;
}

export interface Progress {
  update(counts: Counts): void;
  /** A message that must not be drawn over by the bar. */
  log(message: string): void;
  stop(): void;
}

/** Plain output prints at most this often, so a log file gets a heartbeat, not a flood. */
const PLAIN_INTERVAL_MS = 2000;

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Finishing rate of this run only: results from an earlier run say nothing about the current pace. */
function pace(counts: Counts, doneAtStart: number, startedAt: number) {
  const seconds = (Date.now() - startedAt) / 1000;
  const rate = seconds > 0 ? (counts.done - doneAtStart) / seconds : 0;
  const remaining = counts.total - counts.done;
  return { rate: rate.toFixed(1), eta: remaining === 0 ? '0s' : rate > 0 ? formatDuration(remaining / rate) : '--' };
}

export function createProgress(stream: NodeJS.WritableStream, initial: Counts): Progress {
  const tty = (stream as { isTTY?: boolean }).isTTY === true;
  return tty ? barProgress(stream, initial) : plainProgress(stream, initial);
}

function barProgress(stream: NodeJS.WritableStream, initial: Counts): Progress {
  const startedAt = Date.now();
  const bar = new SingleBar(
    {
      stream,
      format: '{bar} {value}/{total} done ({failed} failed) | submitted {submitted}/{jobs} | {rate} jobs/s | ETA {eta_text}',
      hideCursor: true,
      gracefulExit: false,
      // Redraw even when the text is unchanged, so a message written over the bar does not erase it.
      forceRedraw: true,
      barsize: 24,
    },
    Presets.shades_classic,
  );
  const payload = (c: Counts) => {
    const { rate, eta } = pace(c, initial.done, startedAt);
    return { failed: c.failed, submitted: c.submitted, jobs: c.jobs, rate, eta_text: eta };
  };
  bar.start(initial.total, initial.done, payload(initial));
  return {
    update: (c) => bar.update(c.done, payload(c)),
    log: (message) => {
      stream.write(`\r\x1b[2K${message}\n`);
      bar.render();
    },
    stop: () => bar.stop(),
  };
}

function plainProgress(stream: NodeJS.WritableStream, initial: Counts): Progress {
  const startedAt = Date.now();
  let latest = initial;
  const timer = setInterval(() => {
    const { rate, eta } = pace(latest, initial.done, startedAt);
    stream.write(`progress: ${latest.done}/${latest.total} done (${latest.failed} failed), submitted ${latest.submitted}/${latest.jobs}, ${rate} jobs/s, ETA ${eta}\n`);
  }, PLAIN_INTERVAL_MS);
  timer.unref();
  return {
    update: (c) => (latest = c),
    log: (message) => stream.write(`${message}\n`),
    stop: () => clearInterval(timer),
  };
}
