import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The files that start broker processes of their own (fleets of workers, restarts, signals, the
 * CLI) and time what those do: they run one at a time, after the rest, with the machine to
 * themselves.
 */
const PROCESSES = ['test/{api-restart,cli-main,cli-submit,crash,deployment-files,front-door-processes,job-ends,limits,rolling-restart,routing-fleet,shutdown-signals}.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        // Vitest's default on two cores is one file at a time (CPUs less one); three at once let
        // one file's waits on Redis, the mock and timers overlap another's work.
        test: { name: 'in-process', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...PROCESSES], maxWorkers: 3 },
      },
      { extends: true, test: { name: 'processes', include: PROCESSES, maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
