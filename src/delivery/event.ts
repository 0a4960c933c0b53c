import { type JobRecord, toPublicJob } from '../store/job-record.js';

export interface WebhookEvent {
  /** Same for every attempt and every redelivery of this event. */
  id: string;
  type: string;
  body: string;
}

/** `job.<status>` for a finished job, with the job as it ended (delivery details left out, they change). */
export function jobEvent(job: JobRecord): WebhookEvent {
  const id = `evt_${job.id.slice('job_'.length)}`;
  const type = `job.${job.status}`;
  const { webhook: _delivery, ...data } = toPublicJob(job);
  const body = JSON.stringify({ id, object: 'event', type, created_at: Math.floor((job.finished_at ?? Date.now()) / 1000), data });
  return { id, type, body };
}
