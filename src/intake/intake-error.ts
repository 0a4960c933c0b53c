/** A request the intake refuses; the API turns it into the error shape with this status. */
export class IntakeError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Seconds, for a Retry-After header. */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}
