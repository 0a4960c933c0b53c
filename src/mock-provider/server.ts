import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { answer, type MockDialect, type MockErrorKind, type MockStream } from './dialect.js';
import { anthropicDialect } from './dialects/anthropic.js';
import { azureOpenAIDialect } from './dialects/azure-openai.js';
import { bedrockDialect } from './dialects/bedrock.js';
import { geminiDialect } from './dialects/gemini.js';
import { openAIDialect } from './dialects/openai.js';

/** How the fake provider misbehaves; every field can be changed at run time through `/_mock/behaviour`. */
export interface MockBehaviour {
  /** Added to every answer. */
  latencyMs: number;
  /** Uniform extra latency in [0, jitterMs). */
  jitterMs: number;
  /** Share of calls (0..1) answered with `errorStatus`. */
  errorRate: number;
  errorStatus: number;
  /** Share of calls (0..1) answered 429 with `Retry-After: retryAfterS`. */
  rateLimitRate: number;
  retryAfterS: number;
  /** When set, a call without `Authorization: Bearer <this>` gets 401. */
  apiKey: string | null;
  /** Share of calls answered 200 with a body that is not JSON. */
  garbageRate: number;
  /** Share of calls whose 200 body is cut off mid-way (the connection closes early). */
  truncateRate: number;
  /** Share of calls whose connection is reset without an answer. */
  resetRate: number;
  /**
   * Calls that differ from the rest: a call whose request body contains `match` gets this latency
   * (instead of latencyMs) and, with `status`, that error. For tests where only some callers' calls are slow.
   */
  rules: MockRule[];
  /** When set, every answer reports this many completion tokens, whatever it says: a model that writes more than its caller guessed. */
  reportCompletionTokens: number | null;
  /** Pause between the frames of a streamed answer. */
  streamChunkDelayMs: number;
  /** When set, a streamed answer breaks after this many frames, as `streamFault` says. */
  streamFailAfter: number | null;
  /** How a stream breaks: an error event in the provider's shape, a reset connection, or silence with the connection held open. */
  streamFault: StreamFault;
}

export type StreamFault = 'error' | 'reset' | 'hang';

export interface MockRule {
  match: string;
  latencyMs?: number;
  status?: number;
  /**
   * The error message for `status`; `${header:NAME}` is replaced by that request header, as
   * providers and proxies that quote what they were sent do (an echoed key, a gateway's address).
   */
  message?: string;
  /** For this call's stream: break after this many frames, as `streamFault` (default `error`) says. */
  streamFailAfter?: number;
  streamFault?: StreamFault;
}

export const DEFAULT_BEHAVIOUR: MockBehaviour = {
  latencyMs: 0,
  jitterMs: 0,
  errorRate: 0,
  errorStatus: 503,
  rateLimitRate: 0,
  retryAfterS: 1,
  apiKey: null,
  garbageRate: 0,
  truncateRate: 0,
  resetRate: 0,
  rules: [],
  reportCompletionTokens: null,
  streamChunkDelayMs: 0,
  streamFailAfter: null,
  streamFault: 'error',
};

const streamFault = z.enum(['error', 'reset', 'hang']);
const rule = z.strictObject({
  match: z.string().min(1),
  latencyMs: z.number().nonnegative().optional(),
  status: z.int().min(100).max(599).optional(),
  message: z.string().optional(),
  streamFailAfter: z.int().nonnegative().optional(),
  streamFault: streamFault.optional(),
});
const share = z.number().min(0).max(1);
/** What PUT /_mock/behaviour may change: a field the mock does not know is a 400, not silently ignored. */
const behaviourSchema = z
  .strictObject({
    latencyMs: z.number().nonnegative(),
    jitterMs: z.number().nonnegative(),
    errorRate: share,
    errorStatus: z.int().min(100).max(599),
    rateLimitRate: share,
    retryAfterS: z.number().nonnegative(),
    apiKey: z.string().nullable(),
    garbageRate: share,
    truncateRate: share,
    resetRate: share,
    rules: z.array(rule),
    reportCompletionTokens: z.int().nonnegative().nullable(),
    streamChunkDelayMs: z.number().nonnegative(),
    streamFailAfter: z.int().nonnegative().nullable(),
    streamFault,
  })
  .partial();

export interface MockStats {
  calls: number;
  by_status: Record<string, number>;
  in_flight: number;
  max_in_flight: number;
  models: Record<string, number>;
  /** The last user message of the most recent calls, oldest first (bounded), for order checks. */
  recent: string[];
  /** The body of the last call, as the provider received it. */
  last_request: unknown;
  /** When each recent call arrived (ms since the epoch), its status and the tokens it reported. */
  timeline: { at: number; status: number; tokens: number; model: string }[];
  /** Calls whose connection closed before their answer was complete: the caller hung up (or a fault injected here cut it). */
  aborted: number;
}

const RECENT_KEPT = 10_000;

/** Every wire format the mock speaks; one file each under dialects/. */
export const DIALECTS: MockDialect[] = [openAIDialect, azureOpenAIDialect, anthropicDialect, geminiDialect, bedrockDialect];

/**
 * A fake LLM provider over real HTTP, speaking each provider's wire format (paths, auth headers,
 * error bodies) with latency, error, 429 and wire-fault injection shared by all of them. Tests and
 * benchmarks run the real adapter code against it.
 */
export function buildMockProvider(
  initial: Partial<MockBehaviour> = {},
  dialects: MockDialect[] = DIALECTS,
): FastifyInstance & { behaviour: MockBehaviour; stats: MockStats } {
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
  const behaviour: MockBehaviour = { ...DEFAULT_BEHAVIOUR, rules: [], ...initial };
  const stats: MockStats = { calls: 0, by_status: {}, in_flight: 0, max_in_flight: 0, models: {}, recent: [], timeline: [], last_request: null, aborted: 0 };
  let seq = 0;

  const count = (at: number, status: number, tokens: number, model: string) => {
    stats.by_status[status] = (stats.by_status[status] ?? 0) + 1;
    stats.timeline.push({ at, status, tokens, model });
    if (stats.timeline.length > RECENT_KEPT) stats.timeline.shift();
  };

  const handle = (dialect: MockDialect) => async (req: FastifyRequest, reply: FastifyReply) => {
    const arrived = Date.now();
    stats.calls++;
    stats.in_flight++;
    stats.max_in_flight = Math.max(stats.max_in_flight, stats.in_flight);
    // The response closes before it has been written only when the caller hung up.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) stats.aborted++;
    });
    let status = 200;
    let usedTokens = 0;
    let model = '';
    const reject = (s: number, message: string, kind: MockErrorKind) => {
      status = s;
      const { body, headers } = dialect.error(s, message, kind);
      if (headers) reply.headers(headers);
      return reply.code(s).send(body);
    };
    try {
      const rule = behaviour.rules.length > 0 ? matchRule(behaviour.rules, req.body) : undefined;
      const delay = (rule?.latencyMs ?? behaviour.latencyMs) + (behaviour.jitterMs > 0 ? Math.random() * behaviour.jitterMs : 0);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      if (rule?.status !== undefined) {
        const message = quoting(rule.message ?? `Injected failure (${rule.status}).`, req);
        return reject(rule.status, message, 'injected');
      }
      if (behaviour.apiKey !== null && !dialect.authorized(req, behaviour.apiKey)) return reject(401, 'Invalid API key provided.', 'auth');
      if (Math.random() < behaviour.rateLimitRate) {
        reply.header('retry-after', String(behaviour.retryAfterS));
        return reject(429, 'Rate limit reached for requests.', 'rate_limit');
      }
      if (Math.random() < behaviour.errorRate) return reject(behaviour.errorStatus, `Injected failure (${behaviour.errorStatus}).`, 'injected');
      if (Math.random() < behaviour.resetRate) {
        status = 0;
        req.raw.socket.destroy();
        return reply.hijack();
      }
      if (Math.random() < behaviour.garbageRate) return reply.type('application/json').send('<html><body>502 Bad Gateway</body></html>');
      stats.last_request = req.body;
      const call = dialect.parse(req);
      if ('invalid' in call) return reject(400, call.invalid, 'invalid');
      model = call.model;
      stats.models[model] = (stats.models[model] ?? 0) + 1;
      stats.recent.push(call.userText);
      if (stats.recent.length > RECENT_KEPT) stats.recent.shift();
      const result = answer(call, ++seq);
      if (behaviour.reportCompletionTokens !== null) result.completionTokens = behaviour.reportCompletionTokens;
      usedTokens = result.promptTokens + result.completionTokens;
      if (dialect.streams(req)) {
        const failAfter = rule?.streamFailAfter ?? behaviour.streamFailAfter;
        await writeStream(reply, dialect, dialect.renderStream(call, result, String(seq), req), {
          delayMs: behaviour.streamChunkDelayMs,
          ...(failAfter !== null && { failAfter, fault: rule?.streamFault ?? behaviour.streamFault }),
          message: quoting(rule?.message ?? 'Injected failure mid-stream.', req),
        });
        return reply;
      }
      const body = dialect.render(call, result, String(seq));
      if (Math.random() < behaviour.truncateRate) {
        // Promise the whole body, send half, hang up: what a dying upstream looks like.
        const text = JSON.stringify(body);
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        reply.raw.write(text.slice(0, text.length >> 1), () => reply.raw.destroy());
        return reply;
      }
      return reply.send(body);
    } finally {
      count(arrived, status, usedTokens, model);
      stats.in_flight--;
    }
  };

  for (const dialect of dialects) {
    app.post(dialect.path, handle(dialect));
    if (dialect.streamPath) app.post(dialect.streamPath, handle(dialect));
  }

  app.get('/_mock/stats', async () => stats);
  app.get('/_mock/behaviour', async () => behaviour);
  app.put('/_mock/behaviour', async (req, reply) => {
    const parsed = behaviourSchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return reply.code(400).send({ error: { type: 'invalid_request_error', message: `${issue.path.join('.') || '(body)'}: ${issue.message}`, param: issue.path.join('.') || null, code: 'invalid_behaviour' } });
    }
    return Object.assign(behaviour, parsed.data);
  });
  app.post('/_mock/reset', async () => {
    Object.assign(behaviour, DEFAULT_BEHAVIOUR, { rules: [] }, initial);
    Object.assign(stats, { calls: 0, by_status: {}, in_flight: 0, max_in_flight: 0, models: {}, recent: [], timeline: [], last_request: null, aborted: 0 });
    return { ok: true };
  });

  return Object.assign(app, { behaviour, stats });
}

/**
 * Writes a streamed answer frame by frame, pausing `delayMs` between frames; with `failAfter`, the
 * stream breaks after that many frames: an error frame in the dialect's shape, a reset, or silence
 * (the connection held open until the caller gives up). A caller that hangs up stops it.
 */
async function writeStream(reply: FastifyReply, dialect: MockDialect, stream: MockStream, opts: { delayMs: number; failAfter?: number; fault?: StreamFault; message: string }): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': stream.contentType, 'cache-control': 'no-cache', connection: 'keep-alive' });
  // Each frame is handed to the socket before the next (or a fault): a reset then cuts between frames, not inside one.
  const write = (frame: string | Uint8Array) => new Promise<void>((resolve) => res.write(frame, () => resolve()));
  for (const [i, frame] of stream.frames.entries()) {
    if (res.destroyed) return;
    if (opts.failAfter !== undefined && i === opts.failAfter) {
      if (opts.fault === 'reset') return void res.socket?.destroy();
      if (opts.fault === 'hang') return new Promise<void>((resolve) => res.once('close', resolve));
      await write(dialect.streamError(opts.message));
      return void res.end();
    }
    if (i > 0 && opts.delayMs > 0) await new Promise((r) => setTimeout(r, opts.delayMs));
    await write(frame);
  }
  res.end();
}

/** A rule's message with `${header:NAME}` replaced by what the caller sent in that header. */
const quoting = (message: string, req: FastifyRequest) => message.replace(/\$\{header:([A-Za-z0-9-]+)\}/g, (_m, name: string) => String(req.headers[name.toLowerCase()] ?? ''));

function matchRule(rules: MockRule[], body: unknown): MockRule | undefined {
  const text = JSON.stringify(body ?? null);
  return rules.find((r) => text.includes(r.match));
}

export async function startMockProvider(
  behaviour: Partial<MockBehaviour> = {},
  listen: { port?: number; host?: string } = {},
  dialects: MockDialect[] = DIALECTS,
) {
  const app = buildMockProvider(behaviour, dialects);
  const address = await app.listen({ port: listen.port ?? 0, host: listen.host ?? '127.0.0.1' });
  return { app, url: address, baseUrl: `${address}/v1`, stats: app.stats, behaviour: app.behaviour };
}
