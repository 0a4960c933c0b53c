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

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'switchyard_' });
  }
}
