import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/**
 * What this process measures as it works: submissions at intake, attempts and their latency in the
 * worker pools, webhook deliveries. Cluster-wide totals kept in Redis are added by the API's
 * /metrics route; a worker-only process serves these on `metrics.port`.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly jobsSubmitted = new Counter({ name: 'switchyard_jobs_submitted_total', help: 'Jobs accepted at intake, by task.', labelNames: ['task'], registers: [this.registry] });
  readonly jobsFinished = new Counter({
    name: 'switchyard_jobs_finished_total', help: 'Jobs this process ended, by status and provider.', labelNames: ['status', 'provider'], registers: [this.registry],
  });
  readonly attempts = new Counter({
    name: 'switchyard_attempts_total',
    help: 'Provider attempts, by outcome (succeeded, fallback, failed, rate_limited, skipped) and reason (the error type).',
    labelNames: ['provider', 'outcome', 'reason'],
    registers: [this.registry],
  });
  readonly providerLatency = new Histogram({
    name: 'switchyard_provider_latency_seconds', help: 'Provider call time.', labelNames: ['provider'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [this.registry],
  });
  readonly brokerOverhead = new Histogram({
    name: 'switchyard_broker_overhead_seconds', help: 'Time from intake to finish, less the provider call, for jobs that succeeded at their first hop.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5], registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: 'switchyard_webhook_deliveries_total', help: 'Webhook attempts, by outcome: delivered, retry, gave_up.', labelNames: ['outcome'], registers: [this.registry],
  });

  readonly routed = new Counter({
    name: 'switchyard_routed_jobs_total', help: 'Jobs routed, by alias, strategy and the target tried first.', labelNames: ['alias', 'strategy', 'target'], registers: [this.registry],
  });
  readonly routingSkips = new Counter({
    name: 'switchyard_routing_skips_total', help: 'Targets left out or moved back when a job was routed, by reason (context_window, degraded, circuit_open, throttled).', labelNames: ['target', 'reason'], registers: [this.registry],
  });
  readonly downgrades = new Counter({
    name: 'switchyard_routing_downgrades_total', help: 'Jobs sent to a cheaper alias because a budget passed its downgrade_at.', labelNames: ['from', 'to', 'reason'], registers: [this.registry],
  });
  readonly budgetCrossings = new Counter({
    name: 'switchyard_budget_crossings_total', help: 'Budgets crossing a threshold this process noticed first (level downgrade or exhausted), once a month each.', labelNames: ['scope', 'level'], registers: [this.registry],
  });
  readonly healthChanges = new Counter({
    name: 'switchyard_provider_health_changes_total', help: 'Provider health judgements that changed, by the new state.', labelNames: ['provider', 'state'], registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'switchyard_' });
  }
}
