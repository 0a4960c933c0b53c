/**
 * The error taxonomy (DESIGN section 4) in one place: every provider failure, whether an HTTP
 * status or a transport fault, becomes a ProviderError that says what the job and the breaker do.
 */
export type ProviderErrorType =
  | 'rate_limited'
  | 'provider_unavailable'
  | 'provider_auth'
  | 'model_not_found'
  | 'context_length_exceeded'
  | 'invalid_request'
  | 'timeout'
  | 'connection_error'
  | 'bad_response';

export interface ProviderError {
  type: ProviderErrorType;
  message: string;
  status?: number;
  /** Another target may succeed where this one failed. */
  retryable: boolean;
  /** Counts towards opening this provider's circuit breaker. */
  breakerFailure: boolean;
  /** From Retry-After, when the provider asked us to slow down. */
  retryAfterMs?: number;
  /** What only the operator should read (the raw socket error): logged, never put in a job. */
  detail?: string;
}

const MAX_MESSAGE = 500;
const CONTEXT_LENGTH = /context[_ ]length|maximum context|context window|too many tokens|prompt is too long|input is too long/i;

const clip = (s: string) => (s.length > MAX_MESSAGE ? `${s.slice(0, MAX_MESSAGE)}…` : s);

/** Retry-After is either seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const seconds = Number(v);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Classifies a non-2xx answer. `code` and `message` come from the provider's error body, if it had one. */
export function classifyStatus(
  status: number,
  detail: { message?: string; code?: string },
  retryAfter?: string | string[],
): ProviderError {
  const message = clip(detail.message || `HTTP ${status}`);
  const base = { status, message };
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(retryAfter);
    return { ...base, type: 'rate_limited', retryable: true, breakerFailure: false, ...(retryAfterMs !== undefined && { retryAfterMs }) };
  }
  if (status === 401 || status === 403) return { ...base, type: 'provider_auth', retryable: true, breakerFailure: true };
  if (status === 404 || detail.code === 'model_not_found') return { ...base, type: 'model_not_found', retryable: true, breakerFailure: false };
  if (status === 408) return { ...base, type: 'timeout', retryable: true, breakerFailure: true };
  if (status >= 500) return { ...base, type: 'provider_unavailable', retryable: true, breakerFailure: true };
  if (detail.code === 'context_length_exceeded' || CONTEXT_LENGTH.test(detail.message ?? '')) {
    return { ...base, type: 'context_length_exceeded', retryable: true, breakerFailure: false };
  }
  return { ...base, type: 'invalid_request', retryable: false, breakerFailure: false };
}

/**
 * What a failed connection is called in a job's ledger. Socket errors name the address they were
 * dialling (`connect ECONNREFUSED 10.0.3.7:443`), which is the operator's business, not the
 * tenant's: the ledger gets the kind of failure and its code, the log gets the rest.
 */
const CONNECTION_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'the provider refused the connection',
  ECONNRESET: 'the connection to the provider was reset',
  EPIPE: 'the connection to the provider was reset',
  UND_ERR_SOCKET: 'the connection to the provider closed unexpectedly',
  UND_ERR_CLOSED: 'the connection to the provider closed unexpectedly',
  ENOTFOUND: "the provider's host name does not resolve",
  EAI_AGAIN: "the provider's host name could not be resolved",
  ETIMEDOUT: 'connecting to the provider timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connecting to the provider timed out',
  EHOSTUNREACH: 'the provider cannot be reached',
  ENETUNREACH: 'the provider cannot be reached',
};

/** Classifies a failure that never produced a usable answer: abort, socket error, bad body. */
export function classifyTransport(err: unknown): ProviderError {
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
    return { type: 'timeout', message: 'the provider did not answer in time', retryable: true, breakerFailure: true };
  }
  const code = e.code ?? e.name ?? 'Error';
  const what = CONNECTION_FAILURES[code] ?? (/^(ERR_TLS|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED)/.test(code) ? 'the TLS handshake with the provider failed' : 'the connection to the provider failed');
  return { type: 'connection_error', message: `${what} (${code})`, retryable: true, breakerFailure: true, detail: clip(e.message ?? String(err)) };
}

export function badResponse(message: string, status?: number): ProviderError {
  return { type: 'bad_response', message: clip(message), retryable: true, breakerFailure: true, ...(status !== undefined && { status }) };
}

/**
 * An error the provider sent inside a 2xx stream (an `error` event, an exception frame): it has no
 * HTTP status of its own, so its code or type names what it is. Unknown kinds count as the
 * provider failing, which is what a stream that breaks off usually is.
 */
export function classifyStreamError(detail: { message?: string; code?: string }): ProviderError {
  const code = (detail.code ?? '').toLowerCase();
  const status = /rate|throttl|quota/.test(code) ? 429 : /context_length|invalid|validation|bad_request/.test(code) ? 400 : /overload/.test(code) ? 529 : 500;
  const { status: _none, ...error } = classifyStatus(status, { message: detail.message || 'the provider sent an error in its stream', ...(detail.code && { code: detail.code }) });
  return error;
}
