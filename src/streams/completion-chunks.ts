import type { ChatCompletion } from '../providers/types.js';

/**
 * A finished completion told again as the chunks of a stream: for a replay whose chunks have
 * expired from Redis, or a job that never streamed. Per choice a role delta, its text (or its tool
 * calls) whole, its finish reason; then the usage chunk.
 */
export function chunksFromCompletion(completion: ChatCompletion): Record<string, unknown>[] {
  const base = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model: completion.model, ...(completion.system_fingerprint !== undefined && { system_fingerprint: completion.system_fingerprint }) };
  const chunks: Record<string, unknown>[] = [];
  for (const c of completion.choices as { index: number; message: Record<string, unknown>; finish_reason: string | null; logprobs?: unknown }[]) {
    const { role = 'assistant', content = null, tool_calls: calls, refusal = null } = c.message;
    chunks.push({ ...base, choices: [{ index: c.index, delta: { role, content: calls ? null : '', refusal: null }, logprobs: null, finish_reason: null }] });
    if (typeof content === 'string' && content !== '') chunks.push({ ...base, choices: [{ index: c.index, delta: { content }, logprobs: null, finish_reason: null }] });
    if (typeof refusal === 'string') chunks.push({ ...base, choices: [{ index: c.index, delta: { refusal }, logprobs: null, finish_reason: null }] });
    if (Array.isArray(calls)) {
      const parts = calls.map((t: { id: string; type: string; function: { name: string; arguments: string } }, index) => ({ index, id: t.id, type: t.type, function: t.function }));
      chunks.push({ ...base, choices: [{ index: c.index, delta: { tool_calls: parts }, logprobs: null, finish_reason: null }] });
    }
    chunks.push({ ...base, choices: [{ index: c.index, delta: {}, logprobs: null, finish_reason: c.finish_reason ?? 'stop' }] });
  }
  if (completion.usage) chunks.push({ ...base, choices: [], usage: completion.usage });
  return chunks;
}
