import { type JobRecord, toPublicJob } from '../store/job-record.js';

export interface WebhookEvent {
  /** Same for every attempt and every redelivery of this event. */
  id: string;
  type: string;
  body: string;
}

/**
 * `job.<status>` for a finished job, with the job as it ended (delivery details left out, they change).
 *
 * Deliveries do not store this body: the sender rebuilds it from the record at each attempt. That
 * is only sound because it is a pure function of fields a finished record never changes again
 * (the job scripts refuse to touch a terminal record; only its webhook status and attempts move,
 * and those are left out), so every retry and redelivery sends the same bytes. Keep it that way:
 * nothing here may read the clock or anything else outside the record.
 */
export function jobEvent(job: JobRecord): WebhookEvent {
  const id = jobEventId(job.id, job.reopened);
  const type = `job.${job.status}`;
  const { webhook: _delivery, ...data } = toPublicJob(job);
  // Every terminal state stamps finished_at; created_at stands in only so this stays clock-free.
  const body = JSON.stringify({ id, object: 'event', type, created_at: Math.floor((job.finished_at ?? job.created_at) / 1000), data });
  return { id, type, body };
}

/**
 * The id of a job's event, known without building it. A job an operator re-opened ends again, and
 * that end is a new event (its receivers dedupe by id): the count of re-openings names it.
 */
export function jobEventId(jobId: string, reopened = 0): string {
  return `evt_${jobId.slice('job_'.length)}${reopened > 0 ? `-r${reopened}` : ''}`;
}
