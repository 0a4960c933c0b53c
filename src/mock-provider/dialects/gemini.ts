import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { countTokens, type MockAnswer, type MockCall, type MockDialect, type MockStream, textPieces } from '../dialect.js';

/** google.rpc.Code names for the HTTP statuses the mock answers with. */
const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

type Part = { text?: unknown; functionCall?: unknown; functionResponse?: { response?: Record<string, unknown> }; thoughtSignature?: unknown };
type Content = { role?: unknown; parts?: Part[] };

const textOf = (content: Content | undefined) =>
  (content?.parts ?? [])
    .map((p) => (typeof p.text === 'string' ? p.text : ''))
    .filter(Boolean)
    .join(' ');

/** What the function response ending the conversation said, as the model would read it back. */
function functionResult(content: Content | undefined): string | null {
  const response = content?.parts?.at(-1)?.functionResponse?.response;
  if (!response) return null;
  const result = response.result ?? response.output ?? response;
  return typeof result === 'string' ? result : JSON.stringify(result);
}

/** The checks Google makes that an adapter is most likely to get wrong. */
function invalid(body: Record<string, unknown>, contents: Content[]): string | null {
  if (contents.length === 0) return '* GenerateContentRequest.contents: contents is not specified';
  for (const [i, c] of contents.entries()) {
    if (c.role !== undefined && c.role !== 'user' && c.role !== 'model') return `Please use a valid role: user, model. (contents[${i}].role)`;
    if (!Array.isArray(c.parts) || c.parts.length === 0) return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`;
    // As Gemini 3 does: a replayed step's first function call must carry its thought signature.
    const firstCall = c.parts.find((p) => p.functionCall);
    if (c.role === 'model' && firstCall && typeof firstCall.thoughtSignature !== 'string') {
      return 'Function call is missing a thought_signature in functionCall parts.';
    }
  }
  const gen = (body.generationConfig ?? {}) as Record<string, unknown>;
  if (gen.responseJsonSchema !== undefined && gen.responseMimeType !== 'application/json') {
    return 'responseMimeType must be application/json when responseJsonSchema is set.';
  }
  return null;
}

/** The model and the method share the last path segment (`gemini-2.5-flash:generateContent`). */
function modelAction(req: FastifyRequest): { segment: string; model: string; method: string } {
  const segment = String((req.params as { modelAction?: unknown }).modelAction ?? '');
  const colon = segment.lastIndexOf(':');
  return colon < 0 ? { segment, model: segment, method: '' } : { segment, model: segment.slice(0, colon), method: segment.slice(colon + 1) };
}

const streams = (req: FastifyRequest) => modelAction(req).method === 'streamGenerateContent';

/** Reads a generateContent or streamGenerateContent body. */
function parseGenerateContent(req: FastifyRequest): MockCall | { invalid: string } {
  const { segment, model, method } = modelAction(req);
  if ((method !== 'generateContent' && method !== 'streamGenerateContent') || model === '') return { invalid: `Unsupported method or model in ${JSON.stringify(segment)}.` };
  // Without alt=sse Google streams one JSON array instead of events; the mock does not speak that,
  // so an adapter that forgets the parameter fails here rather than against Google.
  if (method === 'streamGenerateContent' && (req.query as { alt?: unknown } | undefined)?.alt !== 'sse') {
    return { invalid: 'The mock streams only as Server-Sent Events: call streamGenerateContent with ?alt=sse.' };
  }
  const body = (req.body ?? {}) as Record<string, unknown>;
  const contents = Array.isArray(body.contents) ? (body.contents as Content[]) : [];
  const problem = invalid(body, contents);
  if (problem) return { invalid: problem };

  const last = contents.at(-1);
  const lastUserText = [...contents].reverse().find((c) => c.role !== 'model' && textOf(c) !== '');
  const gen = (body.generationConfig ?? {}) as { maxOutputTokens?: unknown; responseMimeType?: unknown };
  const tools = ((body.tools ?? []) as { functionDeclarations?: { name?: unknown }[] }[]).flatMap((t) =>
    (t.functionDeclarations ?? []).map((d) => ({ name: String(d.name ?? '') })),
  );
  const mode = (body.toolConfig as { functionCallingConfig?: { mode?: unknown } } | undefined)?.functionCallingConfig?.mode;
  return {
    model,
    userText: textOf(lastUserText),
    toolResult: functionResult(last),
    promptTokens: countTokens(JSON.stringify([body.systemInstruction ?? null, contents])),
    maxTokens: typeof gen.maxOutputTokens === 'number' ? gen.maxOutputTokens : null,
    tools,
    toolsDisabled: mode === 'NONE',
    wantsJson: gen.responseMimeType === 'application/json',
  };
}

/** Gemini 3 signs every function call step; the mock's signature is just a digest, opaque all the same. */
const signature = (id: string) => createHash('sha256').update(`mock-thought-${id}`).digest('base64');

const finishReason = (a: MockAnswer) => (a.finish === 'length' ? 'MAX_TOKENS' : 'STOP');

/** usageMetadata with `completionTokens` of the answer written so far. */
const usageMetadata = (a: MockAnswer, completionTokens = a.completionTokens) => ({
  promptTokenCount: a.promptTokens,
  candidatesTokenCount: completionTokens,
  totalTokenCount: a.promptTokens + completionTokens,
  promptTokensDetails: [{ modality: 'TEXT', tokenCount: a.promptTokens }],
});

/** Google ends each event with CRLF pairs; the adapter must not assume bare newlines. */
const event = (data: unknown) => `data: ${JSON.stringify(data)}\r\n\r\n`;

/**
 * The answer as `streamGenerateContent?alt=sse` sends it: one partial GenerateContentResponse per
 * event, the text in pieces, a function call whole in one event, every event with the running
 * usageMetadata and the response id, the last with the finishReason and the totals. No end marker:
 * the body ends.
 */
function streamFrames(call: MockCall, a: MockAnswer, id: string): MockStream {
  const meta = { modelVersion: call.model, responseId: `mock-${id}` };
  const candidate = (parts: unknown[], last: boolean) => ({ content: { parts, role: 'model' }, ...(last && { finishReason: finishReason(a) }), index: 0 });
  if (a.toolCall) {
    const part = { functionCall: { name: a.toolCall.name, args: a.toolCall.arguments }, thoughtSignature: signature(id) };
    return { contentType: 'text/event-stream', frames: [event({ candidates: [candidate([part], true)], usageMetadata: usageMetadata(a), ...meta })] };
  }
  const pieces = a.text === '' ? [''] : textPieces(a.text);
  let written = '';
  const frames = pieces.map((piece, i) => {
    const last = i === pieces.length - 1;
    written += piece;
    return event({ candidates: [candidate([{ text: piece }], last)], usageMetadata: usageMetadata(a, last ? a.completionTokens : countTokens(written)), ...meta });
  });
  return { contentType: 'text/event-stream', frames };
}

export const geminiDialect: MockDialect = {
  name: 'gemini',
  // find-my-way has no way to match half a segment, so the param takes `<model>:<method>` whole.
  path: '/v1beta/models/:modelAction',
  // Header only, though Google also takes `?key=`: keys in URLs end up in logs, and the adapter must not do that.
  authorized: (req, key) => req.headers['x-goog-api-key'] === key,
  parse: parseGenerateContent,
  render(call, a, id) {
    const parts = a.toolCall
      ? [{ functionCall: { name: a.toolCall.name, args: a.toolCall.arguments }, thoughtSignature: signature(id) }]
      : [{ text: a.text }];
    return {
      candidates: [{ content: { parts, role: 'model' }, finishReason: finishReason(a), index: 0 }],
      usageMetadata: usageMetadata(a),
      modelVersion: call.model,
      responseId: `mock-${id}`,
    };
  },
  streams,
  renderStream: streamFrames,
  // A google.rpc.Status in a data event, as Google sends an error once the stream has begun.
  streamError: (message) => event({ error: { code: 500, message, status: 'INTERNAL' } }),
  error(status, message, kind) {
    // Real keys that fail say why in an ErrorInfo; the mock's 401 does the same.
    const details = kind === 'auth' ? [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' }] : undefined;
    const name = STATUS_NAMES[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT');
    return { body: { error: { code: status, message, status: name, ...(details && { details }) } } };
  },
};
