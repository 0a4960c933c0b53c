import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface BrokerProcess {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  /** Resolves once a log line matching `msg` appears. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Writes a config file for child processes and returns its path. */
export function writeConfig(config: unknown): string {
  const path = join(tmpdir(), `switchyard-test-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, stringify(config));
  return path;
}

/** Runs `switchyard <role>` from source in its own process, as an operator would run it. */
export function spawnBroker(role: 'start' | 'api' | 'worker', env: Record<string, string>, args: string[] = []): BrokerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', role, ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchBroker(child);
}

/** Reads a broker process's JSON log lines from its stdout as they come, however it was started. */
export function watchBroker(child: ChildProcess): BrokerProcess {
  const lines: Record<string, unknown>[] = [];
  const watchers: { msg: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(line);
      for (const w of watchers.filter((w) => w.msg === line.msg)) w.resolve(line);
    }
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    lines,
    waitForLog(msg, timeoutMs = 20_000) {
      const seen = lines.find((l) => l.msg === msg);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${msg}" log line in ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
        watchers.push({ msg, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        child.once('exit', (code) => reject(new Error(`process exited (${code}) before "${msg}"; stderr: ${stderr}`)));
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
