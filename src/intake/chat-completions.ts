import { z } from 'zod';
import type { JobBody } from './job-request.js';

/** The front door's own headers, checked like a body field (a bad one is a 400 naming it). */
export const frontDoorHeaders = z.looseObject({
  'x-switchyard-priority': z.coerce.number().int().min(1).max(10).optional(),
  'x-switchyard-task': z.string().min(1).max(128).optional(),
  'x-switchyard-deadline-s': z.coerce.number().int().min(1).max(7 * 24 * 3600).optional(),
  'idempotency-key': z.string().min(1).max(255).optional(),
});

export type FrontDoorHeaders = z.infer<typeof frontDoorHeaders>;

/** How a caller asked for its stream: whether it wants the usage chunk OpenAI sends last. */
export interface StreamWish {
  includeUsage: boolean;
}

/**
 * A `POST /v1/chat/completions` body and headers as the job it becomes. `model` names an alias, a
 * `provider/model` or `task:<name>`; `x-switchyard-task` routes by task whatever the body's model
 * (so code with a model name written into it can be routed without touching it). The job's
 * deadline is the header's, else `defaultDeadlineS`: a caller waits for its answer no longer.
 */
export function toJobBody(body: Record<string, unknown> & { model: string }, headers: FrontDoorHeaders, defaultDeadlineS: number): { job: JobBody; stream: StreamWish | null } {
  const { model, stream, stream_options: options, ...rest } = body;
  const task = headers['x-switchyard-task'] ?? (model.startsWith('task:') ? model.slice('task:'.length) : undefined);
  const wantsStream = stream === true;
  const request = { ...rest, ...(wantsStream && { stream: true, ...(options ? { stream_options: options as object } : {}) }) } as JobBody['request'];
  const job: JobBody = {
    ...(task !== undefined ? { task } : { model }),
    priority: headers['x-switchyard-priority'] ?? 5,
    request,
    metadata: {},
    deadline_s: headers['x-switchyard-deadline-s'] ?? defaultDeadlineS,
  };
  return { job, stream: wantsStream ? { includeUsage: (options as { include_usage?: boolean } | null | undefined)?.include_usage === true } : null };
}
