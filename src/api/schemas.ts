import { z } from 'zod';
import { JOB_STATUSES } from '../store/job-record.js';

/**
 * The shapes the API answers with, for the OpenAPI document. Responses are not validated or
 * rebuilt through them (a route sends what its handler built, as JSON): they describe, they do not
 * cost the hot path anything.
 */

export const errorSchema = z
  .object({
    error: z.object({
      type: z.string(),
      message: z.string(),
      param: z.string().nullable(),
      code: z.string().nullable(),
    }),
  })
  .meta({ description: 'Every error, whatever its status' });

const attempt = z.looseObject({
  hop: z.int(),
  provider: z.string(),
  model: z.string(),
  outcome: z.enum(['succeeded', 'fallback', 'failed', 'rate_limited', 'skipped', 'cancelled', 'discarded', 'retried']),
  error: z.looseObject({ type: z.string(), message: z.string() }).optional(),
  started_at: z.int(),
  latency_ms: z.number(),
});

export const jobSchema = z
  .looseObject({
    id: z.string(),
    object: z.literal('job'),
    status: z.enum(JOB_STATUSES),
    task: z.string().nullable(),
    model: z.string().nullable(),
    priority: z.int(),
    metadata: z.record(z.string(), z.string()),
    created_at: z.int(),
    started_at: z.int().nullable(),
    finished_at: z.int().nullable(),
    expires_at: z.int().nullable(),
    provider: z.string().nullable(),
    provider_model: z.string().nullable(),
    routing: z
      .looseObject({
        alias: z.string().nullable(),
        strategy: z.string(),
        rule: z.int().optional(),
        input_tokens: z.int(),
        downgraded: z.looseObject({ from: z.string(), reason: z.enum(['tenant_budget', 'alias_budget']), share: z.number() }).optional(),
        explored: z.boolean().optional(),
        affinity: z.enum(['hit', 'miss', 'lost']).optional(),
        candidates: z.array(
          z.looseObject({
            target: z.string(), tier: z.int(), position: z.int().optional(), skipped: z.literal('context_window').optional(),
            demoted: z.enum(['degraded', 'circuit_open', 'throttled']).optional(), score: z.number().optional(), context_window: z.int().optional(),
          }),
        ),
      })
      .nullable()
      .meta({ description: 'Why the job went where it went: the strategy, the rule, a budget downgrade, and each candidate target with its place in the chain or why it was left out or moved back' }),
    attempts: z.array(attempt),
    result: z.looseObject({ object: z.literal('chat.completion') }).nullable().meta({ description: 'An OpenAI chat.completion, whichever provider answered' }),
    usage: z.looseObject({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() }).nullable(),
    cost_usd: z.number().nullable(),
    error: z.looseObject({ type: z.string(), message: z.string() }).nullable(),
    hops: z
      .array(z.object({ hop: z.int(), target: z.string(), queue: z.string(), bull_job_id: z.string() }))
      .meta({ description: 'The BullMQ job that carried each hop the job reached (Bull Board shows them under these ids)' }),
    webhook: z.looseObject({ url: z.string(), status: z.string().nullable(), attempts: z.array(z.looseObject({})) }).nullable(),
  })
  .meta({ description: 'A job' });

export const listOf = <T extends z.ZodType>(item: T) =>
  z.object({ object: z.literal('list'), data: z.array(item), first_id: z.string().nullable().optional(), last_id: z.string().nullable().optional(), has_more: z.boolean().optional() });

/** The 4xx answers a route may give, each in the error shape. */
export const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, errorSchema]));

/**
 * A route's documented answers. Typed away on purpose: handlers send the public views the store
 * builds (toPublicJob), and a schema kept for the document should not become a second type for
 * every reply to satisfy.
 */
export const responses = (byStatus: Record<number, z.ZodType>) => byStatus as unknown as undefined;

/** Route options that keep a response schema for the document only: the body goes out as JSON, unvalidated. */
export const describedOnly = { serializerCompiler: () => (data: unknown) => JSON.stringify(data) } as const;
