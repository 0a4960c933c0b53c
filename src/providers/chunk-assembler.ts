import { normaliseUsage } from './openai/adapter.js';
import type { Usage } from '../store/job-record.js';
import type { ChatChunk, ChatCompletion } from './types.js';

interface ToolCallPart {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
  /** Provider data a call must carry back (Gemini's thought signature). */
  extra_content?: unknown;
}

interface Choice {
  role: string;
  content: string | null;
  refusal: string | null;
  toolCalls: Map<number, { id: string; type: string; name: string; arguments: string; extra?: unknown }>;
  finish: string | null;
  logprobs: unknown[] | null;
}

/**
 * Builds the `chat.completion` a stream adds up to, chunk by chunk, as OpenAI's own SDK does: text
 * and refusals concatenated per choice, tool calls merged by their index (id and name from their
 * first delta, arguments appended), the last finish reason and the usage. The finished job keeps
 * this, so a streamed job reads like any other.
 */
export class ChunkAssembler {
  private readonly choices = new Map<number, Choice>();
  private usageRaw: Record<string, unknown> | null = null;
  private fingerprint: string | undefined;
  count = 0;

  add(chunk: ChatChunk): void {
    this.count++;
    if (chunk.usage) this.usageRaw = chunk.usage;
    if (typeof chunk.system_fingerprint === 'string') this.fingerprint = chunk.system_fingerprint;
    for (const c of chunk.choices) {
      let choice = this.choices.get(c.index);
      if (!choice) this.choices.set(c.index, (choice = { role: 'assistant', content: null, refusal: null, toolCalls: new Map(), finish: null, logprobs: null }));
      const d = c.delta ?? {};
      if (typeof d.role === 'string') choice.role = d.role;
      if (typeof d.content === 'string') choice.content = (choice.content ?? '') + d.content;
      if (typeof d.refusal === 'string') choice.refusal = (choice.refusal ?? '') + d.refusal;
      for (const [n, part] of ((d.tool_calls as ToolCallPart[] | undefined) ?? []).entries()) {
        const at = part.index ?? n;
        const call = choice.toolCalls.get(at) ?? { id: '', type: 'function', name: '', arguments: '' };
        if (part.id) call.id = part.id;
        if (part.type) call.type = part.type;
        if (part.function?.name) call.name += part.function.name;
        if (part.function?.arguments) call.arguments += part.function.arguments;
        if (part.extra_content !== undefined) call.extra = part.extra_content;
        choice.toolCalls.set(at, call);
      }
      const content = (c.logprobs as { content?: unknown[] } | null | undefined)?.content;
      if (Array.isArray(content)) choice.logprobs = [...(choice.logprobs ?? []), ...content];
      if (c.finish_reason) choice.finish = c.finish_reason;
    }
  }

  get usage(): Usage | null {
    return normaliseUsage(this.usageRaw);
  }

  completion(id: string, created: number, model: string): ChatCompletion {
    const choices = [...this.choices.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => {
        const message: Record<string, unknown> = { role: c.role, content: c.content, refusal: c.refusal };
        if (c.toolCalls.size > 0) {
          message.tool_calls = [...c.toolCalls.entries()].sort(([a], [b]) => a - b).map(([, t]) => ({ id: t.id, type: t.type, function: { name: t.name, arguments: t.arguments }, ...(t.extra !== undefined && { extra_content: t.extra }) }));
        }
        return { index, message, logprobs: c.logprobs ? { content: c.logprobs } : null, finish_reason: c.finish ?? 'stop' };
      });
    return {
      id,
      object: 'chat.completion',
      created,
      model,
      ...(this.fingerprint && { system_fingerprint: this.fingerprint }),
      choices,
      ...(this.usageRaw && { usage: this.usage }),
    };
  }
}
