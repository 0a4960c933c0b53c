import type { FastifyReply } from 'fastify';
import { apiError } from './errors.js';

/**
 * Requests this API process holds open waiting on a job (long-polls, front-door calls, streams),
 * counted per tenant: each costs a socket and a waiter, so a tenant's share is bounded by
 * `server.max_waiting_per_tenant`.
 */
export class HeldRequests {
  private readonly held = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Takes a place for `tenant`, or answers 429 on `reply` and returns false. */
  take(tenant: string, reply: FastifyReply, param: string | null): boolean {
    const now = this.held.get(tenant) ?? 0;
    if (now >= this.max) {
      void reply
        .code(429)
        .header('retry-after', '1')
        .send(apiError('rate_limit_error', `this tenant already holds ${now} waiting requests on this server (server.max_waiting_per_tenant); wait on fewer jobs at once, or poll`, param, 'too_many_waiting'));
      return false;
    }
    this.held.set(tenant, now + 1);
    return true;
  }

  release(tenant: string): void {
    const left = (this.held.get(tenant) ?? 1) - 1;
    if (left > 0) this.held.set(tenant, left);
    else this.held.delete(tenant);
  }
}
