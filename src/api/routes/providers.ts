import type { FastifyPluginAsync } from 'fastify';
import { fourDigits } from '../../routing/routing-state.js';
import type { ApiServices } from '../app.js';

const seconds = (ms: number) => (ms > 0 ? Math.ceil(ms / 1000) : null);
/** Of the attempts routing recorded on a target, the share that handed their job on to the next one. */
const share = (part: number, whole: number) => (whole > 0 ? fourDigits(part / whole) : null);

/**
 * Each provider's breaker, queue, limits and current use. `totals` (attempts, tokens and spend
 * since the totals began) add up every tenant's calls, so only operators see them.
 */
export async function providerViews(services: ApiServices, opts: { totals: boolean }) {
  const { queues, breakers, budgets, config, store, routing } = services;
  const stats = await routing.stats();
  return Promise.all(
    queues.all().map(async ([name, queue]) => {
      const settings = config.providers[name]!;
      const breaker = breakers.view(name);
      const health = routing.health(name);
      const targets = [...stats.targets].filter(([target]) => target.startsWith(`${name}/`)).map(([target, t]) => ({ target, ...t, fallback_share: share(t.fallbacks, t.attempts) }));
      const attempts = targets.reduce((n, t) => n + t.attempts, 0);
      const fallbacks = targets.reduce((n, t) => n + t.fallbacks, 0);
      const [counts, pausedMs, requests, tokens, totals] = await Promise.all([
        queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'),
        queues.pausedForMs(name),
        queues.requestsInWindow(name),
        budgets.tokensUsed(name),
        opts.totals ? store.providerTotals(name) : undefined,
      ]);
      return {
        name,
        object: 'provider' as const,
        type: settings.type,
        breaker: {
          state: breaker.state,
          until: breaker.state === 'closed' ? null : seconds(breaker.until),
          consecutive_failures: breaker.failures,
        },
        health: { ...health, since: health.since === null ? null : Math.floor(health.since / 1000) },
        in_flight: counts.active ?? 0,
        fallback_share: share(fallbacks, attempts),
        targets,
        queue: { ...counts, waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0), paused_for_ms: pausedMs },
        limits: { rpm: settings.rpm ?? null, tpm: settings.tpm ?? null, window_ms: settings.rate_window_ms, max_in_flight: settings.max_in_flight, timeout_ms: settings.timeout_ms },
        usage: { requests_in_window: requests, tokens_in_window: tokens },
        ...(totals && { totals }),
      };
    }),
  );
}

/** GET /v1/providers: what a caller needs to know of each provider, and nothing of other tenants' use. */
export const providersRoutes: FastifyPluginAsync = async (app) => {
  app.addHook('onRequest', app.services.auth.hook);
  app.get('/providers', async () => ({ object: 'list', data: await providerViews(app.services, { totals: false }) }));
};
