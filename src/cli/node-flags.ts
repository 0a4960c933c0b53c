/**
 * The Node flags the broker's processes start with: package.json's scripts, the Dockerfile's
 * entrypoint and the CLI's shebang each spell them out (test/deployment-files.test.ts holds them
 * to this list), and the bench starts its brokers with them.
 *
 * V8 collects its young generation each time a 16 MB semi-space fills. A worker with fifty calls
 * in flight holds each job's request, answer and promises across several of those collections, so
 * they are copied and promoted instead of dying young: 150 scavenges over a pinned 18,000-job drain
 * took 1.16 s; with 32 MB, 80 took 0.73 s (64 MB: 50, 0.65 s, for twice the memory). The space
 * grows only as a process allocates, so an idle broker's memory is unchanged.
 */
export const NODE_FLAGS = ['--max-semi-space-size=32'];
