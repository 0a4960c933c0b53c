import { randomBytes } from 'node:crypto';
import type { Usage } from '../../store/job-record.js';
import type { ChatCompletion } from '../types.js';
import type { GeminiCandidate, GeminiFinishReason, GeminiPart, GeminiResponse, GeminiUsageMetadata } from './types.js';

/** Finish reasons that mean Google's filters stopped the answer. */
const FILTERED = new Set<GeminiFinishReason>(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY']);

/**
 * Gemini `generateContent` answer → OpenAI chat.completion, or null when it carries neither
 * candidates nor a reason for having none. A blocked prompt is an answer, not a failure: the
 * provider worked and another one would likely refuse too.
 */
export function toCompletion(body: GeminiResponse, model: string, now = Date.now()): ChatCompletion | null {
  const responseId = body.responseId ?? randomBytes(12).toString('base64url');
  const candidates = [...(body.candidates ?? [])].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  let choices: unknown[];
  if (candidates.length > 0) choices = candidates.map((c, i) => toChoice(c, i, responseId));
  else if (body.promptFeedback?.blockReason) choices = [blockedChoice(body.promptFeedback.blockReason)];
  else return null;
  const usage = toUsage(body.usageMetadata);
  return {
    id: body.responseId ?? `chatcmpl-${responseId}`,
    object: 'chat.completion',
    created: Math.floor(now / 1000),
    model: body.modelVersion ?? model,
    choices,
    ...(usage && { usage }),
  };
}

function toChoice(candidate: GeminiCandidate, index: number, responseId: string) {
  const parts = candidate.content?.parts ?? [];
  // Thought parts are the model's reasoning summary, not its answer.
  const texts = parts.filter((p) => typeof p.text === 'string' && !p.thought).map((p) => p.text);
  const toolCalls = parts.filter((p) => p.functionCall).map((p, i) => toToolCall(p, i, responseId));
  const message: Record<string, unknown> = { role: 'assistant', content: texts.length > 0 ? texts.join('') : null, refusal: null };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  return { index, message, logprobs: null, finish_reason: finishReason(candidate.finishReason, toolCalls.length > 0) };
}

/**
 * Gemini names no call ids (newer models may), so ids are made from the response id: stable for
 * one answer and unique across the turns of a conversation, which tool-result bookkeeping needs.
 * The thought signature rides along where Google's own OpenAI-compatible API puts it, so a caller
 * that sends the assistant message back unchanged keeps Gemini 3's reasoning state.
 */
export function toToolCall(part: GeminiPart, i: number, responseId: string) {
  const call = part.functionCall!;
  return {
    id: call.id ?? `call_${responseId}_${i}`,
    type: 'function',
    function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) },
    ...(part.thoughtSignature && { extra_content: { google: { thought_signature: part.thoughtSignature } } }),
  };
}

export function finishReason(reason: GeminiFinishReason | undefined, calledTools: boolean): string {
  if (reason === 'MAX_TOKENS') return 'length';
  if (reason && FILTERED.has(reason)) return 'content_filter';
  // Gemini says STOP after a function call; OpenAI callers look for tool_calls.
  return calledTools ? 'tool_calls' : 'stop';
}

export function blockedChoice(blockReason: string) {
  return {
    index: 0,
    message: { role: 'assistant', content: null, refusal: `Gemini blocked the prompt (${blockReason}).` },
    logprobs: null,
    finish_reason: 'content_filter',
  };
}

/**
 * Gemini counts thinking apart from the answer (thoughtsTokenCount beside candidatesTokenCount);
 * OpenAI's completion_tokens include reasoning tokens, so here they are added in and also shown as
 * reasoning_tokens. Tokens from built-in tools are input, so they join prompt_tokens, which keeps
 * prompt + completion equal to Gemini's total. promptTokenCount already includes cached tokens,
 * as OpenAI's prompt_tokens does.
 */
export function toUsage(meta: GeminiUsageMetadata | undefined): Usage | null {
  if (!meta) return null;
  const thoughts = meta.thoughtsTokenCount ?? 0;
  const prompt = (meta.promptTokenCount ?? 0) + (meta.toolUsePromptTokenCount ?? 0);
  const completion = (meta.candidatesTokenCount ?? 0) + thoughts;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: meta.totalTokenCount ?? prompt + completion,
    prompt_tokens_details: { cached_tokens: meta.cachedContentTokenCount ?? 0 },
    completion_tokens_details: { reasoning_tokens: thoughts },
  };
}
