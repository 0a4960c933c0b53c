/**
 * What each routing strategy costs per job beside `ordered`: the router's own time (from the shared
 * state's snapshot, no Redis), the Redis commands and Redis CPU per job end to end (intake, hops,
 * the once-a-second statistics and the snapshot reads included), and the end-to-end drain rate.
 * Two providers on the same zero-latency mock, so only routing differs between the runs.
 */
import { encode } from 'gpt-tokenizer';
import type { Logger } from '../src/log.js';
import { parseConfig } from '../src/config/load.js';
import type { Config, Strategy } from '../src/config/schema.js';
import { STRATEGIES } from '../src/config/schema.js';
import { estimatePromptTokens } from '../src/routing/token-estimate.js';
import { drain } from './drain.js';
import { chatBody } from './harness.js';

export interface StrategyCost {
  strategy: Strategy;
  routeUs: number;
  commandsPerJob: number;
  redisCpuUsPerJob: number;
  jobsPerS: number;
}

function configFor(redisUrl: string, prefix: string, mockBaseUrl: string, strategy: Strategy): Config {
  // `usage` needs limits to weigh; generous ones, so nothing waits on them.
  const limits = strategy === 'usage' ? { rpm: 10_000_000 } : {};
  return parseConfig(
    {
      redis: { url: redisUrl, prefix },
      providers: {
        one: { type: 'openai', base_url: mockBaseUrl, max_in_flight: 25, ...limits },
        two: { type: 'openai', base_url: mockBaseUrl, max_in_flight: 25, ...limits },
      },
      pricing: { 'one/bench-model': { input: 1, output: 2 }, 'two/bench-model': { input: 1.5, output: 2 } },
      models: { fast: { strategy, targets: ['one/bench-model', 'two/bench-model'] } },
      tasks: { default: 'fast' },
    },
    {},
    'bench',
  );
}

async function oneStrategy(redisUrl: string, prefix: string, mockBaseUrl: string, strategy: Strategy, n: number, log: Logger, quiet: Logger): Promise<StrategyCost> {
  let routeUs = 0;
  const { rate, redis } = await drain(configFor(redisUrl, prefix, mockBaseUrl, strategy), redisUrl, n, log, quiet, {
    beforeFill: async (intakeOnly) => {
      // The router alone, from the snapshot: what routing adds to each job's intake.
      const t = performance.now();
      for (let i = 0; i < 20_000; i++) await intakeOnly.router.route({ request: chatBody(i) }, 'bench');
      routeUs = ((performance.now() - t) * 1000) / 20_000;
    },
  });
  return { strategy, routeUs, commandsPerJob: redis.calls, redisCpuUsPerJob: redis.cpuUs, jobsPerS: rate };
}

/** Every strategy in turn, each on a prefix of its own. */
export async function routingCosts(redisUrl: string, mockBaseUrl: string, n: number, newPrefix: () => string, log: Logger, quiet: Logger): Promise<StrategyCost[]> {
  const out: StrategyCost[] = [];
  // A first run warms the JIT and the connections, so `ordered`, measured first, is not the cold one.
  await oneStrategy(redisUrl, newPrefix(), mockBaseUrl, 'ordered', Math.min(n, 2000), log, quiet);
  for (const strategy of STRATEGIES) out.push(await oneStrategy(redisUrl, newPrefix(), mockBaseUrl, strategy, n, log, quiet));
  return out;
}

/** The prompt estimate routing uses, beside a real tokenizer (o200k, gpt-tokenizer), in µs per job, for a short and a long prompt. */
export function tokenCounting(): { size: string; estimateUs: number; tokenizerUs: number; estimate: number; tokens: number }[] {
  const sizes = [
    { size: 'short (70 B)', request: chatBody(1) },
    { size: 'long (100 KB)', request: { messages: [{ role: 'user' as const, content: 'The quick brown fox, in a hundred kilobytes of prose. '.repeat(1900) }] } },
  ];
  return sizes.map(({ size, request }) => {
    const rounds = size.startsWith('short') ? 20_000 : 50;
    let t = performance.now();
    let estimate = 0;
    for (let i = 0; i < rounds; i++) estimate = estimatePromptTokens(request);
    const estimateUs = ((performance.now() - t) * 1000) / rounds;
    t = performance.now();
    let tokens = 0;
    for (let i = 0; i < rounds; i++) tokens = request.messages.reduce((n, m) => n + encode(m.content).length, 0);
    const tokenizerUs = ((performance.now() - t) * 1000) / rounds;
    return { size, estimateUs, tokenizerUs, estimate, tokens };
  });
}
