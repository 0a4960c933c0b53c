import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

/** `switchyard …` from source, as the tests run it; resolves with the exit code and output. */
async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: { ...process.env, ...env }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A message, not a Node stack trace. */
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);

describe('the switchyard command, as a user meets it', () => {
  it('names an unknown flag and shows the usage, exit 2', async () => {
    const res = await cli(['start', '--no-such-flag']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("Unknown option '--no-such-flag'");
    expect(res.stderr).toContain('usage: switchyard');
    noStack(res.stderr);
  });

  it('names a LOG_LEVEL it does not know, without a stack trace', async () => {
    const res = await cli(['start'], { LOG_LEVEL: 'verbose', SWITCHYARD_CONFIG: 'switchyard.example.yaml', PIPELINE_A_KEY: 'k'.repeat(20), SWITCHYARD_ADMIN_PASSWORD: 'p'.repeat(12) });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent (got "verbose")');
    noStack(res.stderr);
  });

  it('blames a bad REDIS_URL on REDIS_URL, not on the config file', async () => {
    const res = await cli(['start'], { REDIS_URL: 'localhost:6379', SWITCHYARD_CONFIG: 'switchyard.example.yaml', PIPELINE_A_KEY: 'k'.repeat(20), SWITCHYARD_ADMIN_PASSWORD: 'p'.repeat(12) });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('config error at REDIS_URL: expected a redis:// or rediss:// URL, got "localhost:6379"');
    expect(res.stderr).not.toContain('switchyard.example.yaml');
    noStack(res.stderr);
  });

  it('runs from the checkout with `npm run switchyard --`, which never asks the npm registry for a package', async () => {
    const { stdout } = await run('npm', ['run', '--silent', 'switchyard', '--', 'submit', '--help'], { timeout: 30_000 });
    expect(stdout).toContain('usage: switchyard submit <jobs.jsonl> --out <results.jsonl>');
  });
});
