#!/usr/bin/env -S node --max-semi-space-size=32
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load.js';
import { createLogger, LogLevelError } from '../log.js';
import { startMockProvider } from '../mock-provider/server.js';
import { resolveRedis } from '../redis/connection.js';
import { startRuntime } from '../runtime.js';
import { runSubmit } from './submit.js';

const USAGE = `usage: switchyard <command> [options]

commands:
  start                 API, every provider's worker pool, all in one process
  api                   the HTTP API alone
  worker [--providers a,b]  worker pools alone (all configured providers by default)
  submit FILE --out FILE [--task T] [--model M] [--priority N] [--url U] [--api-key K]
                        submit a JSONL file through /v1/jobs/bulk, follow it with a progress bar,
                        write results as they finish; resumable (see README, Batches)
  mock-provider [--port N] [--latency-ms N] [--jitter-ms N] [--error-rate F] [--error-status N]
                [--rate-limit-rate F] [--retry-after-s N] [--api-key K]
                        the built-in fake provider (OpenAI wire format)

environment: SWITCHYARD_CONFIG (default ./switchyard.yaml), REDIS_URL, PORT, LOG_LEVEL`;

/** Beyond the calls' grace, how long the rest of shutdown may take before the process goes anyway. */
const SHUTDOWN_MARGIN_MS = 15_000;

async function runBroker(role: 'start' | 'api' | 'worker', providers: string | undefined) {
  const log = createLogger('switchyard');
  const { config, source } = loadConfig();
  log.info({ config: source, providers: Object.keys(config.providers) }, 'configuration loaded');
  const redis = await resolveRedis(config.redis.url, log);
  let runtime: Awaited<ReturnType<typeof startRuntime>>;
  try {
    runtime = await startRuntime({
      config,
      redisUrl: redis.url,
      log,
      api: role !== 'worker',
      ...(role !== 'api' && { workers: providers ? providers.split(',').map((p) => p.trim()).filter(Boolean) : [] }),
    });
  } catch (err) {
    await redis.embedded?.stop();
    throw err;
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      // A second Ctrl-C means now: no more waiting on calls or Redis.
      log.warn({ signal }, 'second signal: exiting without waiting for shutdown to finish');
      await redis.embedded?.stop();
      process.exit(130);
    }
    stopping = true;
    log.info({ signal, hint: 'send the signal again to exit at once' }, 'shutting down');
    const bound = config.workers.shutdown_grace_ms + SHUTDOWN_MARGIN_MS;
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      runtime.close().then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), bound))),
    ]);
    clearTimeout(timer);
    if (!closed) log.warn({ after_ms: bound }, 'shutdown did not finish in time; exiting anyway');
    // Redis goes last: everything above may still have had something to write.
    await redis.embedded?.stop();
    process.exit(closed ? 0 : 1);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function runMockProvider(values: Record<string, string | boolean | undefined>) {
  const num = (k: string) => (values[k] === undefined ? undefined : Number(values[k]));
  const behaviour = Object.fromEntries(
    Object.entries({
      latencyMs: num('latency-ms'),
      jitterMs: num('jitter-ms'),
      errorRate: num('error-rate'),
      errorStatus: num('error-status'),
      rateLimitRate: num('rate-limit-rate'),
      retryAfterS: num('retry-after-s'),
      apiKey: values['api-key'],
    }).filter(([, v]) => v !== undefined),
  );
  const { baseUrl } = await startMockProvider(behaviour, { port: num('port') ?? 9090, host: (values.host as string) ?? '127.0.0.1' });
  console.log(`mock provider listening: base_url ${baseUrl} (control: ${baseUrl.replace(/\/v1$/, '')}/_mock/behaviour)`);
}

async function main() {
  // `submit` has options of its own; hand it its arguments before the broker's strict parse.
  if (process.argv[2] === 'submit') {
    process.exitCode = await runSubmit(process.argv.slice(3));
    return;
  }
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        providers: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'latency-ms': { type: 'string' },
        'jitter-ms': { type: 'string' },
        'error-rate': { type: 'string' },
        'error-status': { type: 'string' },
        'rate-limit-rate': { type: 'string' },
        'retry-after-s': { type: 'string' },
        'api-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    // parseArgs names the flag it does not know: say that, not where in Node it was noticed.
    console.error(`switchyard: ${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const { positionals, values } = parsed;
  const command = positionals[0];
  if (values.help || !command) {
    console.log(USAGE);
    return;
  }
  if (command === 'start' || command === 'api' || command === 'worker') return runBroker(command, values.providers);
  if (command === 'mock-provider') return runMockProvider(values);
  console.error(`unknown command "${command}"\n\n${USAGE}`);
  process.exitCode = 2;
}

main().catch((err: unknown) => {
  // A setting to correct gets its message; anything else is a fault, and its stack helps.
  if (err instanceof ConfigError || err instanceof LogLevelError) console.error(err.message);
  else console.error(err);
  process.exit(1);
});
