import { badResponse, classifyStatus, type ProviderError } from '../errors.js';
import type { ChatRequest, HttpAnswer, HttpRequest, ProviderAdapter } from '../types.js';
import { sigV4, type AwsCredentials } from './sign.js';
import { bedrockStream } from './stream.js';
import { fromConverse, toConverse } from './translate.js';

export interface BedrockAdapterOptions {
  region: string;
  /** Replaces `https://bedrock-runtime.<region>.amazonaws.com` (a VPC endpoint, a proxy, the mock). */
  baseUrl?: string | undefined;
  credentials: AwsCredentials;
  headers?: Record<string, string> | undefined;
}

/**
 * Amazon Bedrock through the Converse API: one request shape for every model Bedrock hosts,
 * signed with SigV4. Requests and answers are translated to and from OpenAI chat completions.
 */
export function bedrockAdapter(opts: BedrockAdapterOptions): ProviderAdapter {
  const build = converseRequest(opts);
  return {
    buildRequest: (request, model) => build(request, model),
    parseSuccess(answer, model) {
      const parsed = fromConverse(answer.body, model, first(answer.headers['x-amzn-requestid']));
      return 'invalid' in parsed ? { ok: false, error: badResponse(parsed.invalid, answer.status) } : { ok: true, ...parsed };
    },
    classifyError: (answer) => classifyBedrockError(answer),
    stream: bedrockStream(build),
  };
}

/** Another Converse operation than `converse` (the model id's sibling path), with the headers it needs on top of ours. */
export interface ConverseEndpoint {
  operation: string;
  headers: Record<string, string>;
}

export type BuildConverse = (request: ChatRequest, model: string, endpoint?: ConverseEndpoint) => Promise<HttpRequest>;

/** A Converse call, translated and signed: the signature covers that endpoint's own URL, headers and body. */
export function converseRequest(opts: BedrockAdapterOptions): BuildConverse {
  const origin = (opts.baseUrl ?? `https://bedrock-runtime.${opts.region}.amazonaws.com`).replace(/\/+$/, '');
  const sign = sigV4({ region: opts.region, service: 'bedrock', credentials: opts.credentials });
  // Lower-cased so a caller's `Content-Type` replaces ours instead of being signed beside it.
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json',
    ...Object.fromEntries(Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
  };
  return async (request, model, endpoint) => {
    const url = `${origin}/model/${encodeURIComponent(model)}/${endpoint?.operation ?? 'converse'}`;
    const { body, dropped } = toConverse(request);
    const text = JSON.stringify(body);
    const sent = endpoint ? { ...headers, ...endpoint.headers } : headers;
    return { url, headers: await sign(url, sent, text), body: text, ...(dropped.length > 0 && { dropped }) };
  };
}

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/**
 * The status each Bedrock exception is classified as. The exception's name decides, not the status,
 * because Bedrock reuses statuses: ModelNotReadyException comes as a 429 yet is an unavailable
 * model, not a rate limit, and a ModelErrorException's 424 is no fault of the request.
 */
const TREAT_AS_STATUS = new Map<string, number>([
  ['ThrottlingException', 429],
  ['ServiceQuotaExceededException', 429],
  ['AccessDeniedException', 403],
  ['UnrecognizedClientException', 403],
  ['InvalidSignatureException', 403],
  ['IncompleteSignatureException', 403],
  ['ExpiredTokenException', 403],
  ['ResourceNotFoundException', 404],
  ['ModelTimeoutException', 408],
  ['ModelNotReadyException', 503],
  ['ModelErrorException', 500],
  ['InternalServerException', 500],
  ['ServiceUnavailableException', 503],
]);

/** Bedrock's ways of saying the prompt does not fit, beyond those errors.ts knows. */
const CONTEXT_LENGTH = /input is too long|too many input tokens|context (length|window)|prompt is too long|maximum context/i;

/**
 * `x-amzn-ErrorType` names the exception, sometimes with a `:<namespace URL>` tail; some front ends
 * put it in the body's `__type` as `<namespace>#<name>` instead.
 */
function errorType(answer: HttpAnswer, body: Record<string, unknown>): string | undefined {
  const header = first(answer.headers['x-amzn-errortype']);
  if (header) return header.split(':')[0]!.trim();
  return typeof body.__type === 'string' ? body.__type.split('#').pop() : undefined;
}

/** Signature errors quote the canonical request, signed headers and all: the provider client redacts every message (src/providers/redact.ts). */
export function classifyBedrockError(answer: HttpAnswer): ProviderError {
  const body = typeof answer.body === 'object' && answer.body !== null ? (answer.body as Record<string, unknown>) : {};
  const message = typeof body.message === 'string' ? body.message : typeof body.Message === 'string' ? body.Message : undefined;
  const type = errorType(answer, body);
  const code = type === 'ValidationException' && CONTEXT_LENGTH.test(message ?? '') ? 'context_length_exceeded' : type;
  const detail = { ...(message !== undefined && { message }), ...(code !== undefined && { code }) };
  const error = classifyStatus((type === undefined ? undefined : TREAT_AS_STATUS.get(type)) ?? answer.status, detail, answer.headers['retry-after']);
  return { ...error, status: answer.status };
}
