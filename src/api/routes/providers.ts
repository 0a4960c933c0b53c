import type { FastifyPluginAsync } from 'fastify';

const seconds = (ms: number) => (ms > 0 ? Math.ceil(ms / 1000) : null);

/** GET /v1/providers: each provider's breaker, queue, limits and current use, for operators and callers. */
export const providersRoutes: FastifyPluginAsync = async (app) => {
  const { queues, breakers, budgets, config, auth, redis, store } = app.services;
  app.addHook('onRequest', auth.hook);

  app.get('/providers', async () => {
    const data = await Promise.all(
      queues.all().map(async ([name, queue]) => {
        const settings = config.providers[name]!;
        const breaker = breakers.view(name);
        const [counts, pausedMs, requests, tokens, totals] = await Promise.all([
          queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'),
          queues.pausedForMs(name),
          redis.get(queue.keys.limiter!),
          budgets.tokensUsed(name),
          store.providerTotals(name),
        ]);
        // A 429 pause writes a sentinel far above any real count into BullMQ's limiter key.
        const used = Number(requests ?? 0);
        return {
          name,
          object: 'provider',
          type: settings.type,
          breaker: {
            state: breaker.state,
            until: breaker.state === 'closed' ? null : seconds(breaker.until),
            consecutive_failures: breaker.failures,
          },
          queue: { ...counts, waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0), paused_for_ms: pausedMs },
          limits: { rpm: settings.rpm ?? null, tpm: settings.tpm ?? null, window_ms: settings.rate_window_ms, max_in_flight: settings.max_in_flight, timeout_ms: settings.timeout_ms },
          usage: { requests_in_window: used > 1e12 ? null : used, tokens_in_window: tokens },
          totals,
        };
      }),
    );
    return { object: 'list', data };
  });
};
