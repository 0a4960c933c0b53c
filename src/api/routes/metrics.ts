import type { FastifyPluginAsync } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import { protectOperatorRoutes } from '../operator-auth.js';

const BREAKER_LEVEL = { closed: 0, half_open: 1, open: 2 } as const;

/**
 * GET /metrics for Prometheus. Provider totals come from Redis at scrape time, so every API
 * process reports the same cluster-wide numbers: aggregate them with max(), not sum().
 */
export const metricsRoutes: FastifyPluginAsync = async (app) => {
  const { queues, breakers, store, config, metrics, budgets } = app.services;
  await protectOperatorRoutes(app, config.auth);
  const registry = new Registry();
  const providers = () => queues.all().map(([name]) => name);

  const totals = async () => Promise.all(providers().map(async (p) => [p, await store.providerTotals(p)] as const));
  new Counter({
    name: 'switchyard_provider_attempts_total', help: 'Provider calls settled, by outcome.', labelNames: ['provider', 'outcome'], registers: [registry],
    async collect() {
      this.reset();
      for (const [provider, t] of await totals()) {
        this.inc({ provider, outcome: 'succeeded' }, t.succeeded);
        this.inc({ provider, outcome: 'other' }, t.attempts - t.succeeded);
      }
    },
  });
  new Counter({
    name: 'switchyard_provider_tokens_total', help: 'Tokens reported by providers.', labelNames: ['provider', 'kind'], registers: [registry],
    async collect() {
      this.reset();
      for (const [provider, t] of await totals()) {
        this.inc({ provider, kind: 'prompt' }, t.prompt_tokens);
        this.inc({ provider, kind: 'completion' }, t.completion_tokens);
      }
    },
  });
  new Counter({
    name: 'switchyard_provider_cost_usd_total', help: 'Cost of provider calls in USD, from the price table.', labelNames: ['provider'], registers: [registry],
    async collect() {
      this.reset();
      for (const [provider, t] of await totals()) this.inc({ provider }, t.cost_usd);
    },
  });
  const tenants = () => (config.auth.api_keys.length > 0 ? config.auth.api_keys.map((k) => k.name) : ['default']);
  new Counter({
    name: 'switchyard_tenant_tokens_total', help: 'Tokens used per tenant.', labelNames: ['tenant', 'kind'], registers: [registry],
    async collect() {
      this.reset();
      for (const tenant of tenants()) {
        const t = await store.tenantTotals(tenant);
        this.inc({ tenant, kind: 'prompt' }, t.prompt_tokens);
        this.inc({ tenant, kind: 'completion' }, t.completion_tokens);
      }
    },
  });
  new Counter({
    name: 'switchyard_tenant_cost_usd_total', help: 'Cost per tenant in USD, from the price table.', labelNames: ['tenant'], registers: [registry],
    async collect() {
      this.reset();
      for (const tenant of tenants()) this.inc({ tenant }, (await store.tenantTotals(tenant)).cost_usd);
    },
  });
  new Gauge({
    name: 'switchyard_tenant_unfinished_jobs', help: 'Jobs accepted and not yet ended, per tenant.', labelNames: ['tenant'], registers: [registry],
    async collect() {
      this.reset();
      for (const tenant of tenants()) this.set({ tenant }, (await store.tenantTotals(tenant)).queued);
    },
  });
  new Gauge({
    name: 'switchyard_queue_jobs', help: 'Hops on each provider queue, by state (waiting includes prioritized, as in GET /v1/providers).', labelNames: ['provider', 'state'], registers: [registry],
    async collect() {
      this.reset();
      for (const [provider, queue] of queues.all()) {
        const { prioritized, ...counts } = await queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed');
        // Every hop has a priority, so BullMQ keeps the waiting ones as "prioritized": one state, as an operator means it.
        counts.waiting = (counts.waiting ?? 0) + (prioritized ?? 0);
        for (const [state, n] of Object.entries(counts)) this.set({ provider, state }, n);
      }
    },
  });
  new Gauge({
    name: 'switchyard_breaker_state', help: 'Circuit breaker per provider: 0 closed, 1 half-open, 2 open.', labelNames: ['provider'], registers: [registry],
    collect() {
      for (const p of providers()) this.set({ provider: p }, BREAKER_LEVEL[breakers.view(p).state]);
    },
  });

  new Gauge({
    name: 'switchyard_rate_limit_used', help: 'Use of each provider\'s current rate-limit window.', labelNames: ['provider', 'kind'], registers: [registry],
    async collect() {
      this.reset();
      for (const [provider] of queues.all()) {
        const requests = await queues.requestsInWindow(provider);
        if (requests !== null) this.set({ provider, kind: 'requests' }, requests);
        this.set({ provider, kind: 'tokens' }, await budgets.tokensUsed(provider));
      }
    },
  });

  const HEALTH_LEVEL = { healthy: 0, degraded: 1 } as const;
  new Gauge({
    name: 'switchyard_provider_health', help: 'Provider health as routing judges it: 0 healthy, 1 degraded.', labelNames: ['provider'], registers: [registry],
    collect() {
      for (const p of providers()) this.set({ provider: p }, HEALTH_LEVEL[app.services.routing.health(p).state]);
    },
  });
  const routingStats = new Map<string, Promise<Awaited<ReturnType<typeof app.services.routing.stats>>>>();
  // One read per scrape, however many of these gauges ask.
  const stats = () => {
    const key = String(Math.floor(Date.now() / 1000));
    if (!routingStats.has(key)) {
      routingStats.clear();
      routingStats.set(key, app.services.routing.stats());
    }
    return routingStats.get(key)!;
  };
  new Gauge({
    name: 'switchyard_target_latency_ms_per_token', help: 'Decaying average latency per output token of each target, as the latency strategy reads it.', labelNames: ['target'], registers: [registry],
    async collect() {
      this.reset();
      for (const [target, t] of (await stats()).targets) if (t.latency_ms_per_token !== null) this.set({ target }, t.latency_ms_per_token);
    },
  });
  new Gauge({
    name: 'switchyard_target_in_flight', help: 'Jobs leased to each least_busy target and not finished, across every process.', labelNames: ['target'], registers: [registry],
    async collect() {
      this.reset();
      for (const [target, t] of (await stats()).targets) if (t.in_flight !== null) this.set({ target }, t.in_flight);
    },
  });
  new Counter({
    name: 'switchyard_target_attempts_total', help: 'Attempts per target as routing counts them, and how many handed their job on (kind fallback).', labelNames: ['target', 'kind'], registers: [registry],
    async collect() {
      this.reset();
      for (const [target, t] of (await stats()).targets) {
        this.inc({ target, kind: 'all' }, t.attempts);
        this.inc({ target, kind: 'fallback' }, t.fallbacks);
      }
    },
  });
  new Gauge({
    name: 'switchyard_alias_fallback_ratio', help: 'Per alias: fallbacks (a hop handing its job to the next target) per job routed.', labelNames: ['alias'], registers: [registry],
    async collect() {
      this.reset();
      for (const [alias, a] of (await stats()).aliases) if (a.jobs > 0) this.set({ alias }, a.fallbacks / a.jobs);
    },
  });

  // This process's own measurements (attempts, latency, webhooks) beside the cluster-wide totals.
  const merged = Registry.merge([metrics.registry, registry]);
  app.get('/metrics', async (_request, reply) => reply.type(merged.contentType).send(await merged.metrics()));
};
