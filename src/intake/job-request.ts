import { z } from 'zod';

/** Far deeper than any real request; a body nested deeper is an attack on the stack, not a prompt. */
export const MAX_REQUEST_DEPTH = 64;

/** Nesting depth of a JSON value, measured without recursion so the measurement itself cannot overflow. */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

const contentPart = z.looseObject({ type: z.string().min(1) });

const message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().optional(),
  tool_calls: z.array(z.looseObject({ id: z.string(), type: z.string() })).optional(),
  tool_call_id: z.string().optional(),
});

/** The chat-completions fields checked wherever a body comes in (jobs, batch lines, the front door). */
const chatFields = {
  messages: z.array(message).min(1, 'at least one message is required').max(10_000),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.int().positive().optional(),
  max_completion_tokens: z.int().positive().optional(),
  n: z.int().min(1).max(128).optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullable().optional(),
  seed: z.int().optional(),
  tools: z.array(z.looseObject({ type: z.string() })).optional(),
  tool_choice: z.union([z.string(), z.looseObject({ type: z.string() })]).optional(),
  response_format: z.looseObject({ type: z.enum(['text', 'json_object', 'json_schema']) }).optional(),
};

const notTooDeep = [(r: unknown) => nestingDepth(r, MAX_REQUEST_DEPTH) <= MAX_REQUEST_DEPTH, { message: `the request is nested more than ${MAX_REQUEST_DEPTH} levels deep` }] as const;

/**
 * An OpenAI chat-completions body without `model`. The common fields are checked so a bad value is
 * a 400 here rather than a failed job later; any other field passes through to the provider.
 */
export const chatRequestSchema = z
  .looseObject({
    ...chatFields,
    model: z.never({ error: 'set the model on the job ("model" beside "request"), not inside the request' }).optional(),
    stream: z
      .literal(false, { error: 'a queued job does not stream; poll it, use a webhook, or call POST /v1/chat/completions with stream: true' })
      .optional(),
  })
  .refine((r) => r.model === undefined, { path: ['model'], message: 'set the model on the job, not inside the request' })
  .refine(...notTooDeep);

/**
 * A body for the OpenAI-compatible front door, `POST /v1/chat/completions`: the same fields with
 * `model` (an alias, `provider/model` or `task:<name>`) and streaming.
 */
export const chatCompletionsBodySchema = z
  .looseObject({
    ...chatFields,
    model: z.string().min(1, 'model is required').max(256),
    stream: z.boolean().nullable().optional(),
    stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
  })
  .refine(...notTooDeep);

const METADATA_MAX_PAIRS = 16;

export const jobBodySchema = z.strictObject({
  task: z.string().min(1).max(128).optional(),
  model: z.string().min(1).max(256).optional(),
  priority: z.int().min(1).max(10).default(5),
  request: chatRequestSchema,
  webhook_url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  metadata: z
    .record(z.string().min(1).max(64), z.string().max(512))
    .refine((m) => Object.keys(m).length <= METADATA_MAX_PAIRS, `at most ${METADATA_MAX_PAIRS} metadata pairs`)
    .default({}),
  deadline_s: z.int().min(1).max(7 * 24 * 3600).optional(),
});

export type JobBody = z.infer<typeof jobBodySchema>;
