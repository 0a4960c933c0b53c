import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';

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
};

export interface MockStats {
  calls: number;
  by_status: Record<string, number>;
  in_flight: number;
  max_in_flight: number;
  models: Record<string, number>;
  /** The last user message of the most recent calls, oldest first (bounded), for order checks. */
  recent: string[];
  /** When each recent call arrived (ms since the epoch), its status and the tokens it reported. */
  timeline: { at: number; status: number; tokens: number; model: string }[];
}

const RECENT_KEPT = 10_000;

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  429: 'rate_limit_error',
};

function openAIError(reply: FastifyReply, status: number, message: string, code: string | null = null) {
  return reply.code(status).send({ error: { message, type: ERROR_TYPES[status] ?? 'server_error', param: null, code } });
}

/** Rough token count (four characters a token), so usage looks like a real provider's. */
const tokens = (text: string) => Math.max(1, Math.ceil(text.length / 4));

function lastUserText(messages: unknown[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: string; content?: unknown };
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) {
      return m.content.map((p) => (typeof p?.text === 'string' ? p.text : '')).join(' ');
    }
  }
  return '';
}

/**
 * A fake LLM provider speaking the OpenAI chat-completions wire format over real HTTP, with
 * latency, error and 429 injection. Tests and benchmarks run the real adapter code against it.
 */
export function buildMockProvider(initial: Partial<MockBehaviour> = {}): FastifyInstance & { behaviour: MockBehaviour; stats: MockStats } {
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
  const behaviour: MockBehaviour = { ...DEFAULT_BEHAVIOUR, ...initial };
  const stats: MockStats = { calls: 0, by_status: {}, in_flight: 0, max_in_flight: 0, models: {}, recent: [], timeline: [] };
  let seq = 0;

  const count = (at: number, status: number, tokens: number, model: string) => {
    stats.by_status[status] = (stats.by_status[status] ?? 0) + 1;
    stats.timeline.push({ at, status, tokens, model });
    if (stats.timeline.length > RECENT_KEPT) stats.timeline.shift();
  };

  app.post('/v1/chat/completions', async (req, reply) => {
    const arrived = Date.now();
    stats.calls++;
    stats.in_flight++;
    stats.max_in_flight = Math.max(stats.max_in_flight, stats.in_flight);
    try {
      const delay = behaviour.latencyMs + (behaviour.jitterMs > 0 ? Math.random() * behaviour.jitterMs : 0);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const body = (req.body ?? {}) as { model?: unknown; messages?: unknown; max_tokens?: unknown; max_completion_tokens?: unknown };
      let status = 200;
      let usedTokens = 0;
      const reject = (s: number, message: string, code: string | null = null) => {
        status = s;
        return openAIError(reply, s, message, code);
      };
      try {
        if (behaviour.apiKey !== null && req.headers.authorization !== `Bearer ${behaviour.apiKey}`) {
          return reject(401, 'Incorrect API key provided.', 'invalid_api_key');
        }
        if (Math.random() < behaviour.rateLimitRate) {
          reply.header('retry-after', String(behaviour.retryAfterS));
          return reject(429, 'Rate limit reached for requests.', 'rate_limit_exceeded');
        }
        if (Math.random() < behaviour.errorRate) {
          return reject(behaviour.errorStatus, `Injected failure (${behaviour.errorStatus}).`);
        }
        if (Math.random() < behaviour.resetRate) {
          status = 0;
          req.raw.socket.destroy();
          return reply.hijack();
        }
        if (Math.random() < behaviour.garbageRate) {
          return reply.type('application/json').send('<html><body>502 Bad Gateway</body></html>');
        }
        if (typeof body.model !== 'string' || body.model === '') return reject(400, 'you must provide a model parameter');
        if (!Array.isArray(body.messages) || body.messages.length === 0) {
          return reject(400, "'messages' must be a non-empty array", 'invalid_value');
        }
        stats.models[body.model] = (stats.models[body.model] ?? 0) + 1;
        const userText = lastUserText(body.messages);
        stats.recent.push(userText);
        if (stats.recent.length > RECENT_KEPT) stats.recent.shift();
        const promptTokens = tokens(JSON.stringify(body.messages));
        let content = `Mock reply from ${body.model}: ${userText.slice(0, 200)}`;
        let finish = 'stop';
        const limit = Number(body.max_completion_tokens ?? body.max_tokens ?? Infinity);
        if (tokens(content) > limit) {
          content = content.slice(0, Math.max(0, limit * 4));
          finish = 'length';
        }
        const completionTokens = tokens(content);
        usedTokens = promptTokens + completionTokens;
        const completion = {
          id: `chatcmpl-mock-${++seq}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: body.model,
          system_fingerprint: 'fp_mock',
          choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finish }],
          usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
        };
        if (Math.random() < behaviour.truncateRate) {
          // Promise the whole body, send half, hang up: what a dying upstream looks like.
          const text = JSON.stringify(completion);
          reply.hijack();
          reply.raw.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
          reply.raw.write(text.slice(0, text.length >> 1), () => reply.raw.destroy());
          return reply;
        }
        return completion;
      } finally {
        count(arrived, status, usedTokens, typeof body.model === 'string' ? body.model : '');
      }
    } finally {
      stats.in_flight--;
    }
  });

  app.get('/_mock/stats', async () => stats);
  app.get('/_mock/behaviour', async () => behaviour);
  app.put('/_mock/behaviour', async (req) => Object.assign(behaviour, req.body as Partial<MockBehaviour>));
  app.post('/_mock/reset', async () => {
    Object.assign(behaviour, DEFAULT_BEHAVIOUR, initial);
    Object.assign(stats, { calls: 0, by_status: {}, in_flight: 0, max_in_flight: 0, models: {}, recent: [], timeline: [] });
    return { ok: true };
  });

  return Object.assign(app, { behaviour, stats });
}

export async function startMockProvider(
  behaviour: Partial<MockBehaviour> = {},
  listen: { port?: number; host?: string } = {},
) {
  const app = buildMockProvider(behaviour);
  const address = await app.listen({ port: listen.port ?? 0, host: listen.host ?? '127.0.0.1' });
  return { app, url: address, baseUrl: `${address}/v1`, stats: app.stats, behaviour: app.behaviour };
}
