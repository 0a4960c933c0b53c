import { z } from 'zod';

/** Wire formats an adapter exists for; the config refuses any other `type`. */
export const PROVIDER_TYPES = ['openai', 'azure-openai', 'anthropic', 'gemini', 'bedrock', 'mock'] as const;

const targetRef = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+\/.+$/, 'expected "provider/model"');

const chain = z.array(targetRef).min(1, 'a chain needs at least one target');

/** How an alias orders its targets within a tier (DESIGN section 8). */
export const STRATEGIES = ['ordered', 'weighted', 'least_busy', 'latency', 'cost', 'usage'] as const;
export type Strategy = (typeof STRATEGIES)[number];

const aliasTarget = z.union([
  targetRef.transform((target) => ({ target, weight: 1, tier: 1 })),
  z.strictObject({
    target: targetRef,
    /** `weighted`: this target's share against the others of its tier. */
    weight: z.number().positive().default(1),
    /** Tier 1 is tried first; a higher tier when every target of the lower ones is spent or unhealthy. */
    tier: z.int().min(1).max(100).default(1),
  }),
]);

/** A spend ceiling for a month (UTC), and where jobs go as it fills. */
const budgetFields = {
  monthly_budget_usd: z.number().positive().optional(),
  /** Past this share of the month's budget (0..1), jobs route to `downgrade_to` instead. */
  downgrade_at: z.number().gt(0).lt(1).optional(),
  /** The cheaper alias jobs route to past `downgrade_at`. */
  downgrade_to: z.string().min(1).optional(),
};

const aliasObject = z.strictObject({
  strategy: z.enum(STRATEGIES).default('ordered'),
  targets: z.array(aliasTarget).min(1, 'an alias needs at least one target'),
  ...budgetFields,
  /**
   * Jobs that share a long prompt prefix stay on the target that last served it (so its prompt
   * cache hits), while it is healthy and not throttled.
   */
  affinity: z
    .union([
      z.boolean().transform((on) => (on ? { min_prefix_chars: 1024, ttl_s: 600 } : undefined)),
      z.strictObject({ min_prefix_chars: z.int().positive().default(1024), ttl_s: z.int().positive().default(600) }),
    ])
    .optional(),
});

/** A plain list is an ordered chain; either way the config holds the object form. */
const alias = z.union([chain.transform((list): AliasConfig => ({ ...aliasObject.parse({ targets: list }), listed: true })), aliasObject.transform((a): AliasConfig => a)]);
/** `listed`: written as a plain list, so problems are named by list index. */
export type AliasConfig = z.output<typeof aliasObject> & { listed?: true };
export type AliasTarget = AliasConfig['targets'][number];

const range = z.strictObject({ gt: z.number().optional(), lt: z.number().optional() });
/** A task rule's condition; every field given must hold. */
const ruleCondition = z.strictObject({
  /** The request's estimated prompt tokens. */
  input_tokens: range.optional(),
  /** Job metadata values; a list matches any of its values. */
  metadata: z.record(z.string(), z.union([z.string(), z.array(z.string()).min(1)])).optional(),
  priority: z.union([z.int(), range]).optional(),
});
const taskRule = z.strictObject({ when: ruleCondition.optional(), model: z.union([z.string().min(1), chain]) });
export type TaskRule = z.output<typeof taskRule>;

/** When a provider counts as degraded: routed around while an alternative exists, never removed. */
const healthFields = {
  /** The window error rate and latency are judged over. */
  window_ms: z.int().min(1000),
  /** Calls in the window before it is judged at all. */
  min_requests: z.int().positive(),
  /** Share of calls (0..1) failing for the provider's own reasons (5xx, timeouts, resets) that marks it degraded. */
  max_error_rate: z.number().gt(0).max(1),
  /** p95 latency per output token this many times its own baseline marks it degraded. */
  latency_factor: z.number().gt(1),
  /** How slowly the baseline follows the p95 (a time constant): slow enough that a slowdown stands out against it. */
  baseline_window_ms: z.int().min(1000),
};
const healthSchema = z.strictObject({
  window_ms: healthFields.window_ms.default(60_000),
  min_requests: healthFields.min_requests.default(20),
  max_error_rate: healthFields.max_error_rate.default(0.5),
  latency_factor: healthFields.latency_factor.default(3),
  baseline_window_ms: healthFields.baseline_window_ms.default(1_800_000),
});
export type HealthConfig = z.output<typeof healthSchema>;

const modelLimits = z.strictObject({
  rpm: z.int().positive().optional(),
  tpm: z.int().positive().optional(),
  /** Prompt plus completion tokens the model takes; overrides the built-in table. */
  context_window: z.int().positive().optional(),
});

const price = z.strictObject({
  input: z.number().nonnegative(),
  output: z.number().nonnegative(),
  cached_input: z.number().nonnegative().optional(),
  cache_write: z.number().nonnegative().optional(),
});

const providerSchema = z.strictObject({
  type: z.enum(PROVIDER_TYPES),
  base_url: z.url().optional(),
  api_key: z.string().min(1).optional(),
  /** Requests per window across every process (BullMQ's queue limiter). */
  rpm: z.int().positive().optional(),
  /** Tokens per window across every process (a Redis budget, reserved from an estimate). */
  tpm: z.int().positive().optional(),
  /** The window rpm and tpm count over; a minute unless a test needs it shorter. */
  rate_window_ms: z.int().positive().default(60_000),
  /** Calls in flight at once for this provider, across every worker process. */
  max_in_flight: z.int().positive().max(10_000).default(50),
  timeout_ms: z.int().positive().default(60_000),
  /** How long the provider's queue pauses after a 429 that names no Retry-After. */
  default_retry_after_ms: z.int().positive().default(1_000),
  /** The longest pause a 429's Retry-After may impose; a provider asking for more gets this. */
  max_retry_after_ms: z.int().positive().default(300_000),
  headers: z.record(z.string(), z.string()).optional(),
  /** Per-model limits, for providers that limit each model on its own. */
  models: z.record(z.string(), modelLimits).optional(),
  /** Overrides the top-level `health` for this provider. */
  health: z.strictObject(healthFields).partial().optional(),
  /** azure-openai: the `api-version` query parameter. */
  api_version: z.string().min(1).optional(),
  /** anthropic: the `anthropic-version` header. */
  anthropic_version: z.string().min(1).optional(),
  /** bedrock: the AWS region and credentials SigV4 signs with. */
  region: z.string().min(1).optional(),
  aws_access_key_id: z.string().min(1).optional(),
  aws_secret_access_key: z.string().min(1).optional(),
  aws_session_token: z.string().min(1).optional(),
});

/** `redis://[auth@]h1:p1,h2:p2` from the nodes' URLs (scheme and credentials from the first). */
function seedsUrl(nodes: string[]): string {
  const head = /^rediss?:\/\/(?:[^@]*@)?/;
  return head.exec(nodes[0]!)![0] + nodes.map((n) => n.replace(head, '')).join(',');
}

export const configSchema = z
  .strictObject({
    redis: z
      .strictObject({
        url: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL').optional(),
        // A hash tag keeps every key in one Redis Cluster slot, which BullMQ's scripts need.
        prefix: z.string().min(1).default('{sy}'),
        /** Redis Cluster: its seed nodes, `redis://host:port` each, instead of `url`. */
        cluster: z.array(z.string().regex(/^rediss?:\/\/[^/,]+$/, 'expected a redis://host:port URL')).min(1).optional(),
        /**
         * 0: every key in the prefix's one slot. N: tenants' jobs and counters in N slots of their
         * own and each provider queue in its own, so Redis Cluster spreads them over its masters
         * (README, "What one Redis carries"). Chosen once: ids carry their shard.
         */
        // An id writes its shard in one base64url character: at most 64.
        shards: z.int().min(0).max(64).default(0),
      })
      .refine((r) => r.shards === 0 || /^\{[^{}]+\}$/.test(r.prefix), { message: 'redis.shards needs a prefix that is one hash tag, such as {sy}', path: ['prefix'] })
      .refine((r) => !(r.cluster && r.url), { message: 'give redis.url (one server) or redis.cluster (its nodes), not both', path: ['cluster'] })
      // A cluster is reached through its seed nodes, written as one URL (src/redis/connection.ts).
      .transform(({ cluster, ...r }) => (cluster ? { ...r, url: seedsUrl(cluster), cluster: true } : { ...r, cluster: false }))
      .prefault({}),
    server: z
      .strictObject({
        port: z.int().min(0).max(65535).default(8080),
        host: z.string().optional(),
        body_limit_bytes: z.int().positive().default(1_048_576),
        /** Long-polls (`?wait=`) one tenant may hold open at once in each API process; more answer 429. */
        max_waiting_per_tenant: z.int().positive().default(1000),
        /** How long a call to the OpenAI-compatible front door may wait for its answer, unless it says (the OpenAI SDK's own timeout). */
        sync_deadline_s: z.int().positive().max(7 * 24 * 3600).default(600),
        /** A worker-only process serves its /metrics here (behind the admin credentials). */
        metrics_port: z.int().min(0).max(65535).optional(),
      })
      .prefault({}),
    auth: z
      .strictObject({
        api_keys: z
          .array(
            z.strictObject({
              name: z.string().min(1),
              key: z.string().min(16, 'use a key of at least 16 characters'),
              /** Where this tenant's batch events go. */
              webhook_url: z.url({ protocol: /^https?$/ }).optional(),
              /** Per-tenant limits, checked at intake. */
              limits: z
                .strictObject({
                  /** Intake requests per minute. */
                  rpm: z.int().positive().optional(),
                  /** Unfinished jobs at once. */
                  max_queued: z.int().positive().optional(),
                  /** Spend per calendar month (UTC), from the price table; with downgrade_at and downgrade_to, jobs move to a cheaper alias as it fills. */
                  ...budgetFields,
                  /** Bytes of uploaded files this tenant may keep at once; overrides files.tenant_quota_bytes. */
                  file_quota_bytes: z.int().positive().optional(),
                })
                .optional(),
            }),
          )
          .default([]),
        admin: z
          .strictObject({
            user: z.string().min(1),
            password: z.string().min(8),
            /** Let Bull Board retry and remove jobs; off, it is read-only. */
            queue_actions: z.boolean().default(false),
          })
          .optional(),
      })
      .prefault({}),
    providers: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/, 'provider names use letters, digits, _ and -'), providerSchema),
    models: z.record(z.string(), alias).default({}),
    /** A task routes to an alias, a `provider/model`, an inline chain, or rules (the first whose `when` holds). */
    tasks: z
      .record(
        z.string(),
        z.union([z.string().transform((model): TaskRule[] => [{ model }]), chain.transform((model): TaskRule[] => [{ model }]), z.array(taskRule).min(1)]),
      )
      .default({}),
    health: healthSchema.prefault({}),
    routing: z
      .strictObject({
        /** How often each process re-reads the shared routing state (in-flight counts, latencies, health, spend). */
        state_refresh_ms: z.int().min(20).max(10_000).default(250),
        /** Share of jobs (0..1) routed off the strategy's pick, so every target stays measured and a degraded one can show it has recovered. */
        explore: z.number().min(0).max(0.5).default(0.05),
      })
      .prefault({}),
    breaker: z
      .strictObject({
        failure_threshold: z.int().positive().default(3),
        cooldown_ms: z.int().positive().default(60_000),
        /**
         * The slowest generation still called normal: a request whose max tokens cannot be produced
         * at this rate within the provider's timeout times out by its own size, not the provider's fault.
         */
        min_tokens_per_s: z.number().positive().default(20),
      })
      .prefault({}),
    workers: z
      .strictObject({
        /** How long a worker's claim on a hop lasts without renewal; renewed every half of it while the call runs. */
        lock_ms: z.int().min(1000).default(30_000),
        /** How often workers look for hops whose worker died. */
        stalled_interval_ms: z.int().min(500).default(15_000),
        /** How many times a hop may be recovered from a dead worker before it fails. */
        max_stalled: z.int().min(1).default(3),
        /** On SIGTERM, how long calls in flight may run on before they are aborted and handed back. */
        shutdown_grace_ms: z.int().nonnegative().default(30_000),
      })
      .prefault({}),
    webhooks: z
      .strictObject({
        /** A `whsec_...` secret (base64 key bytes after the prefix); jobs may only name a webhook_url when one is set. */
        secret: z.string().regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'expected whsec_ followed by a base64 key').optional(),
        /** Also sign with these while receivers move to the new secret. */
        previous_secrets: z.array(z.string().regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'expected whsec_ followed by a base64 key')).default([]),
        allow_private_targets: z.boolean().default(false),
        /** Where batch events go (batch.completed, …); an API key's own `webhook_url` overrides it for its tenant. */
        batch_url: z.url({ protocol: /^https?$/ }).optional(),
        /** Hosts or CIDRs a webhook may reach even though they are private. */
        allowlist: z.array(z.string().min(1)).default([]),
        /** The whole of one attempt (connect, headers, body), not an idle timer: a receiver that trickles bytes still ends here. */
        timeout_ms: z.int().positive().default(15_000),
        /** Deliveries in flight at once in each sender process. */
        concurrency: z.int().positive().max(1000).default(50),
        /** Deliveries in flight at once for one tenant across every sender process, so one slow receiver cannot hold every slot. */
        max_in_flight_per_tenant: z.int().positive().default(8),
        /** Redeliveries a caller may ask for, per job per hour and per tenant per minute. */
        redeliveries_per_job_per_hour: z.int().positive().default(10),
        redeliveries_per_tenant_per_minute: z.int().positive().default(60),
        /** Delay before each attempt, in seconds; its length is the number of attempts. */
        retry_schedule_s: z.array(z.int().nonnegative()).min(1).default([0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]),
      })
      .prefault({}),
    files: z
      .strictObject({
        /** One upload (OpenAI's own cap is 200 MB). */
        max_file_bytes: z.int().positive().default(200 * 1024 * 1024),
        /** One line of an uploaded file; defaults to server.body_limit_bytes, the cap on one job's body. */
        max_line_bytes: z.int().positive().optional(),
        /** Bytes of uploaded files one tenant may keep at once (an API key's limits.file_quota_bytes overrides it). */
        tenant_quota_bytes: z.int().positive().default(1024 * 1024 * 1024),
        /** How long an uploaded file is kept. */
        ttl_s: z.int().positive().default(7 * 24 * 3600),
      })
      .prefault({}),
    batches: z
      .strictObject({
        /** How long the "24h" completion window really is; only tests want it shorter. */
        completion_window_ms: z.int().positive().default(24 * 3600 * 1000),
      })
      .prefault({}),
    /** USD per million tokens, by "provider/model" or by model; overrides the shipped price table. */
    pricing: z.record(z.string(), price).default({}),
    retention: z
      .strictObject({
        job_ttl_s: z.int().positive().default(7 * 24 * 3600),
        /**
         * Finished BullMQ hop jobs kept for Bull Board, by count and by age (whichever comes first);
         * failed ones longer, since those are what an operator looks for. The job record is the lasting one.
         */
        queue_keep_completed: z.int().nonnegative().default(1000),
        queue_keep_completed_age_s: z.int().positive().default(3600),
        queue_keep_failed: z.int().nonnegative().default(5000),
        queue_keep_failed_age_s: z.int().positive().default(7 * 24 * 3600),
        /** A streaming job's chunks in Redis: kept this long after the last, and at most this many (the finished job keeps the whole answer). */
        stream_ttl_s: z.int().positive().default(3600),
        stream_max_chunks: z.int().positive().default(20_000),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    if (Object.keys(cfg.providers).length === 0) {
      ctx.addIssue({ code: 'custom', path: ['providers'], message: 'configure at least one provider' });
    }
    for (const [name, p] of Object.entries(cfg.providers)) {
      const need = (field: keyof typeof p, why: string) => {
        if (p[field] === undefined) ctx.addIssue({ code: 'custom', path: ['providers', name, field], message: `required for type ${p.type}: ${why}` });
      };
      const type: string = p.type;
      if (type === 'azure-openai') {
        need('base_url', 'the resource endpoint, https://<resource>.openai.azure.com');
        need('api_version', 'the api-version query parameter, e.g. 2024-10-21');
      }
      if (type === 'bedrock') {
        need('region', 'the AWS region, e.g. us-east-1');
        need('aws_access_key_id', 'SigV4 credentials');
        need('aws_secret_access_key', 'SigV4 credentials');
      }
    }
    const checkBudget = (b: { monthly_budget_usd?: number | undefined; downgrade_at?: number | undefined; downgrade_to?: string | undefined }, path: (string | number)[]) => {
      if ((b.downgrade_at === undefined) !== (b.downgrade_to === undefined)) {
        ctx.addIssue({ code: 'custom', path: [...path, b.downgrade_at === undefined ? 'downgrade_at' : 'downgrade_to'], message: 'downgrade_at and downgrade_to go together' });
      }
      if (b.downgrade_at !== undefined && b.monthly_budget_usd === undefined) {
        ctx.addIssue({ code: 'custom', path: [...path, 'downgrade_at'], message: 'a downgrade needs monthly_budget_usd to be a share of' });
      }
      if (b.downgrade_to === undefined) return;
      if (!Object.hasOwn(cfg.models, b.downgrade_to)) {
        ctx.addIssue({ code: 'custom', path: [...path, 'downgrade_to'], message: `unknown model alias "${b.downgrade_to}"` });
        return;
      }
      // Downgrades must end somewhere: following them from here may not come back to an alias already passed.
      const passed = new Set<string>(path[0] === 'models' ? [String(path[1])] : []);
      for (let next: string | undefined = b.downgrade_to; next !== undefined; next = cfg.models[next]?.downgrade_to) {
        if (passed.has(next)) {
          ctx.addIssue({ code: 'custom', path: [...path, 'downgrade_to'], message: `downgrades loop back to "${next}"` });
          return;
        }
        passed.add(next);
      }
    };
    const checkTarget = (ref: string, path: (string | number)[]) => {
      const provider = ref.slice(0, ref.indexOf('/'));
      if (!Object.hasOwn(cfg.providers, provider)) {
        ctx.addIssue({ code: 'custom', path, message: `unknown provider "${provider}" in "${ref}"` });
      }
    };
    for (const [name, a] of Object.entries(cfg.models)) {
      const at = (i: number) => (a.listed ? ['models', name, i] : ['models', name, 'targets', i]);
      a.targets.forEach((t, i) => checkTarget(t.target, at(i)));
      const seen = new Set<string>();
      a.targets.forEach((t, i) => {
        if (seen.has(t.target)) ctx.addIssue({ code: 'custom', path: at(i), message: `"${t.target}" is listed twice` });
        seen.add(t.target);
      });
      checkBudget(a, ['models', name]);
    }
    cfg.auth.api_keys.forEach((k, i) => k.limits && checkBudget(k.limits, ['auth', 'api_keys', i, 'limits']));
    const checkRoute = (route: string | string[], path: (string | number)[]) => {
      if (typeof route !== 'string') return route.forEach((ref, i) => checkTarget(ref, [...path, i]));
      if (Object.hasOwn(cfg.models, route)) return;
      if (!route.includes('/')) ctx.addIssue({ code: 'custom', path, message: `unknown model alias "${route}"` });
      else checkTarget(route, path);
    };
    for (const [task, rules] of Object.entries(cfg.tasks)) {
      rules.forEach((r, i) => checkRoute(r.model, rules.length === 1 && !r.when ? ['tasks', task] : ['tasks', task, i, 'model']));
    }
    // Batch events are signed like job events: a batch webhook without a secret would never be sent.
    const batchUrls: [string | undefined, (string | number)[]][] = [
      ...cfg.auth.api_keys.map((k, i): [string | undefined, (string | number)[]] => [k.webhook_url, ['auth', 'api_keys', i, 'webhook_url']]),
      [cfg.webhooks.batch_url, ['webhooks', 'batch_url']],
    ];
    if (!cfg.webhooks.secret) {
      for (const [url, path] of batchUrls) {
        if (url) ctx.addIssue({ code: 'custom', path, message: 'batch events are signed: set webhooks.secret, or they can never be sent' });
      }
    }
    if (!('default' in cfg.tasks)) {
      ctx.addIssue({ code: 'custom', path: ['tasks', 'default'], message: 'a "default" task route is required' });
    }
  });

export type Config = z.infer<typeof configSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type Price = z.infer<typeof price>;
