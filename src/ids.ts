import { randomBytes } from 'node:crypto';

/** `job_` plus 20 url-safe random characters (120 bits). */
export function newJobId(): string {
  return `job_${randomBytes(15).toString('base64url')}`;
}
