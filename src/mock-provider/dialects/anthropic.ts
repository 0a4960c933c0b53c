import type { FastifyRequest } from 'fastify';
import { countTokens, jsonPieces, type MockCall, type MockDialect, type MockStream, sse, textPieces } from '../dialect.js';

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  529: 'overloaded_error',
};

const STOP_REASONS = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use' } as const;

type Block = { type?: string; text?: unknown; id?: unknown; tool_use_id?: unknown; content?: unknown; source?: { type?: string; media_type?: string } };
type Message = { role?: unknown; content?: unknown };

const blocksOf = (content: unknown): Block[] =>
  typeof content === 'string' ? [{ type: 'text', text: content }] : Array.isArray(content) ? (content as Block[]) : [];

const textOf = (content: unknown) =>
  blocksOf(content)
    .flatMap((b) => (b.type === 'text' && typeof b.text === 'string' ? [b.text] : []))
    .join(' ');

const BLOCK_TYPES = new Set(['text', 'image', 'document', 'search_result', 'thinking', 'redacted_thinking', 'tool_use', 'tool_result']);
const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];

/** Anthropic refuses content blocks it does not know (OpenAI's `image_url` among them) and images it cannot read. */
function blockError(messages: Message[]): string | null {
  for (const [i, m] of messages.entries()) {
    for (const [j, b] of (Array.isArray(m.content) ? (m.content as Block[]) : []).entries()) {
      const at = `messages.${i}.content.${j}`;
      if (!BLOCK_TYPES.has(String(b.type))) return `${at}.type: Input tag '${String(b.type)}' found using 'type' does not match any of the expected tags`;
      if (b.type === 'image' && b.source?.type === 'base64' && !IMAGE_TYPES.includes(String(b.source.media_type))) {
        return `${at}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`;
      }
    }
  }
  return null;
}

/**
 * What Anthropic checks about tool blocks: each assistant turn's tool_use ids are answered by
 * tool_result blocks in the next turn, and no tool_result names an id the previous turn did not use.
 * Consecutive same-role messages count as one turn, as the API combines them.
 */
function toolPairingError(messages: Message[]): string | null {
  const turns: { role: unknown; blocks: Block[] }[] = [];
  for (const m of messages) {
    const last = turns.at(-1);
    if (last && last.role === m.role) last.blocks.push(...blocksOf(m.content));
    else turns.push({ role: m.role, blocks: blocksOf(m.content) });
  }
  for (const [i, turn] of turns.entries()) {
    const used = turns[i - 1]?.role === 'assistant' ? turns[i - 1]!.blocks.filter((b) => b.type === 'tool_use').map((b) => b.id) : [];
    const answered = turn.blocks.filter((b) => b.type === 'tool_result').map((b) => b.tool_use_id);
    const stray = answered.find((id) => !used.includes(id));
    if (stray !== undefined) {
      return `messages.${i}.content: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${String(stray)}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`;
    }
    const unanswered = turn.role === 'user' ? used.filter((id) => !answered.includes(id)) : [];
    if (unanswered.length > 0) {
      return `messages.${i - 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${unanswered.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
    }
  }
  return null;
}

/** Reads a Messages API body, refusing what Anthropic refuses: no version header, no max_tokens, bad blocks, unpaired tool blocks. */
function parseMessages(req: FastifyRequest): MockCall | { invalid: string } {
  if (!req.headers['anthropic-version']) return { invalid: 'anthropic-version: header is required' };
  const body = (req.body ?? {}) as Record<string, unknown>;
  if (typeof body.model !== 'string' || body.model === '') return { invalid: 'model: Field required' };
  if (typeof body.max_tokens !== 'number') return { invalid: 'max_tokens: Field required' };
  const messages = body.messages as Message[] | undefined;
  if (!Array.isArray(messages) || messages.length === 0) return { invalid: 'messages: at least one message is required' };
  const badRole = messages.findIndex((m) => m.role !== 'user' && m.role !== 'assistant' && m.role !== 'system');
  if (badRole >= 0) return { invalid: `messages.${badRole}.role: Input should be 'user', 'assistant' or 'system'` };
  const refused = blockError(messages) ?? toolPairingError(messages);
  if (refused) return { invalid: refused };

  const last = messages.at(-1)!;
  const lastResult = last.role === 'user' ? blocksOf(last.content).findLast((b) => b.type === 'tool_result') : undefined;
  const lastUser = [...messages].reverse().find((m) => m.role === 'user' && textOf(m.content) !== '');
  const choice = body.tool_choice as { type?: string; name?: string } | undefined;
  const tools = (Array.isArray(body.tools) ? (body.tools as { name?: unknown }[]) : []).map((t) => ({ name: String(t.name ?? '') }));
  // A forced tool is the one the model calls.
  if (choice?.type === 'tool') tools.sort((a, b) => Number(b.name === choice.name) - Number(a.name === choice.name));
  const format = (body.output_config as { format?: { type?: string } } | undefined)?.format;
  return {
    model: body.model,
    userText: textOf(lastUser?.content),
    toolResult: lastResult ? (typeof lastResult.content === 'string' ? lastResult.content : textOf(lastResult.content)) : null,
    promptTokens: countTokens(JSON.stringify([body.system ?? '', messages])),
    maxTokens: body.max_tokens,
    tools,
    toolsDisabled: choice?.type === 'none',
    wantsJson: format?.type === 'json_schema',
  };
}

type RenderedMessage = { content: Record<string, unknown>[]; stop_reason: string; stop_sequence: null; usage: Record<string, unknown> & { output_tokens: number } };

/**
 * A rendered message as Anthropic streams it: `message_start` with the message, its content empty
 * and its output count at 1; per content block a start (text empty, tool input `{}`), a `ping` after
 * the first, the text or the input JSON in deltas, a stop; then `message_delta` with the stop reason
 * and the output count, and `message_stop`. One event per frame, so faults fall between events.
 */
function anthropicStreamFrames(message: RenderedMessage): MockStream {
  const { content, stop_reason, stop_sequence, usage } = message;
  const frames = [sse({ type: 'message_start', message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }, 'message_start')];
  for (const [index, block] of content.entries()) {
    const tool = block.type === 'tool_use';
    const opening = tool ? { ...block, input: {} } : { type: 'text', text: '' };
    frames.push(sse({ type: 'content_block_start', index, content_block: opening }, 'content_block_start'));
    if (index === 0) frames.push(sse({ type: 'ping' }, 'ping'));
    const deltas = tool ? jsonPieces(JSON.stringify(block.input)).map((partial_json) => ({ type: 'input_json_delta', partial_json })) : textPieces(String(block.text)).map((text) => ({ type: 'text_delta', text }));
    for (const delta of deltas) frames.push(sse({ type: 'content_block_delta', index, delta }, 'content_block_delta'));
    frames.push(sse({ type: 'content_block_stop', index }, 'content_block_stop'));
  }
  frames.push(sse({ type: 'message_delta', delta: { stop_reason, stop_sequence }, usage: { output_tokens: usage.output_tokens } }, 'message_delta'));
  frames.push(sse({ type: 'message_stop' }, 'message_stop'));
  return { contentType: 'text/event-stream; charset=utf-8', frames };
}

/** The Anthropic Messages API: `x-api-key` auth, content blocks, stop reasons and `{"type": "error"}` bodies. */
export const anthropicDialect: MockDialect = {
  name: 'anthropic',
  path: '/v1/messages',
  authorized: (req, key) => req.headers['x-api-key'] === key,
  parse: parseMessages,
  streams: (req) => (req.body as { stream?: unknown } | undefined)?.stream === true,
  renderStream(call, a, id) {
    return anthropicStreamFrames(anthropicDialect.render(call, a, id) as RenderedMessage);
  },
  // Anthropic's own example of an error once a stream has begun: an `error` event, overloaded_error.
  streamError: (message) => sse({ type: 'error', error: { type: 'overloaded_error', message } }, 'error'),
  render(call, a, id) {
    const content = a.toolCall
      ? [{ type: 'tool_use', id: `toolu_mock_${id}`, name: a.toolCall.name, input: a.toolCall.arguments }]
      : [{ type: 'text', text: a.text, citations: null }];
    return {
      id: `msg_mock_${id}`,
      type: 'message',
      role: 'assistant',
      model: call.model,
      content,
      stop_reason: STOP_REASONS[a.finish],
      stop_sequence: null,
      usage: {
        input_tokens: a.promptTokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: a.completionTokens,
        service_tier: 'standard',
      },
    };
  },
  error(status, message, kind) {
    const type = ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
    const requestId = `req_mock_${Math.random().toString(36).slice(2, 14)}`;
    return {
      body: { type: 'error', error: { type, message }, request_id: requestId },
      headers: { 'request-id': requestId, ...(kind === 'rate_limit' && { 'anthropic-ratelimit-requests-remaining': '0' }) },
    };
  },
};
