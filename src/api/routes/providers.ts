import type { FastifyPluginAsync } from 'fastify';

const seconds = (ms: number) => (ms > 0 ? Math.ceil(ms / 1000) : null);

/** GET /v1/providers: each provider's breaker, queue, limits and current use, for operators and callers. */
export const providersRoutes: FastifyPluginAsync = async (app) => {
  const { queues, breakers, budgets, config, auth, store } = app.services;
  app.addHook('onRequest', auth.hook);

  app.get('/providers', async () => {
    const data = await Promise.all(
      queues.all().map(async ([name, queue]) => {
        const settings = config.providers[name]!;
        const breaker = breakers.view(name);
        const [counts, pausedMs, requests, tokens, totals] = await Promise.all([
          queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'),
          queues.pausedForMs(name),
          queues.requestsInWindow(name),
          budgets.tokensUsed(name),
          store.providerTotals(name),
        ]);
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
          usage: { requests_in_window: requests, tokens_in_window: tokens },
          totals,
        };
      }),
    );
    return { object: 'list', data };
  });
};
