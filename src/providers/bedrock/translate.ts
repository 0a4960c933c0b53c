import { randomBytes } from 'node:crypto';
import { isObj, type Obj, parseDataUrl, toolArguments, untranslatedFields } from '../openai-request.js';
import type { Usage } from '../../store/job-record.js';
import type { ChatCompletion, ChatRequest } from '../types.js';
import type {
  ContentBlock,
  ConversationRole,
  ConverseRequest,
  ConverseResponse,
  ImageBlock,
  InferenceConfiguration,
  Message,
  StopReason,
  SystemContentBlock,
  ToolChoice,
  ToolConfiguration,
  ToolResultContentBlock,
  ToolSpecification,
} from './types.js';

/**
 * OpenAI chat-completions ⇄ Bedrock Converse. Everything the request asks for that Converse cannot
 * express is left out and named in `dropped`, so a job never changes meaning silently.
 */

type PartBlock = { text: string } | { image: ImageBlock };


/** Request fields the translation reads; every other field is reported unless it is a no-op. */
const MAPPED = new Set(['messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'tools', 'tool_choice']);

const WHY_DROPPED: Record<string, string> = {
  seed: 'Converse has no sampling seed',
  n: 'Converse returns a single choice',
  logprobs: 'Converse returns no log probabilities',
  top_logprobs: 'Converse returns no log probabilities',
  frequency_penalty: 'Converse has no frequency penalty',
  presence_penalty: 'Converse has no presence penalty',
  logit_bias: 'Converse has no logit bias',
  user: 'Converse has no end-user field',
  response_format: 'Converse has no JSON output mode',
  parallel_tool_calls: 'Converse cannot limit the model to one tool call per turn',
};

/** Values that ask for what Converse does anyway. */
function isNoOp(key: string, value: unknown): boolean {
  if (value === null || value === undefined) return true;
  switch (key) {
    case 'stream':
      return value === false;
    case 'n':
      return value === 1;
    case 'parallel_tool_calls':
      return value === true;
    case 'response_format':
      return isObj(value) && value.type === 'text';
    default:
      return false;
  }
}

/** Sent as the first turn when a conversation opens with the assistant: Converse insists on a user turn first. */
const CONVERSATION_START = '(conversation start)';

export function toConverse(request: ChatRequest): { body: ConverseRequest; dropped: string[] } {
  const dropped = untranslatedFields(request, { reads: MAPPED, why: WHY_DROPPED, otherwise: 'not part of the Converse API', isNoOp });
  const { system, messages } = translateMessages(request.messages, dropped);
  const body: ConverseRequest = { messages };
  if (system.length > 0) body.system = system;
  const inference = inferenceConfig(request);
  if (inference) body.inferenceConfig = inference;
  const tools = toolConfig(request, messages, dropped);
  if (tools) body.toolConfig = tools;
  return { body, dropped };
}

function translateMessages(input: unknown[], dropped: string[]): { system: SystemContentBlock[]; messages: Message[] } {
  const system: SystemContentBlock[] = [];
  const turns: Message[] = [];
  input.forEach((raw, i) => {
    const m = isObj(raw) ? raw : {};
    const where = `messages[${i}]`;
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(...systemBlocks(m.content, where, dropped));
        break;
      case 'user':
        addTurn(turns, 'user', partBlocks(m.content, where, dropped));
        break;
      case 'assistant':
        addTurn(turns, 'assistant', [...partBlocks(m.content, where, dropped), ...toolUses(m.tool_calls, where, dropped)]);
        break;
      case 'tool':
        addTurn(turns, 'user', [{ toolResult: { toolUseId: String(m.tool_call_id ?? ''), content: toolResultContent(m.content, where, dropped) } }]);
        break;
      default:
        dropped.push(`${where}: role ${String(m.role)} has no Converse equivalent`);
    }
  });
  if (turns[0]?.role === 'assistant') {
    turns.unshift({ role: 'user', content: [{ text: CONVERSATION_START }] });
    dropped.push(`messages: Converse needs a user turn first; "${CONVERSATION_START}" was sent before the opening assistant turn`);
  }
  return { system, messages: turns };
}

/** Converse wants user and assistant turns to alternate, so consecutive turns of one role merge. */
function addTurn(turns: Message[], role: ConversationRole, blocks: ContentBlock[]): void {
  if (blocks.length === 0) return;
  const last = turns.at(-1);
  if (last?.role === role) last.content.push(...blocks);
  else turns.push({ role, content: blocks });
}

function systemBlocks(content: unknown, where: string, dropped: string[]): SystemContentBlock[] {
  if (!Array.isArray(content)) return typeof content === 'string' && content !== '' ? [{ text: content }] : [];
  return content.flatMap((raw, j): SystemContentBlock[] => {
    const part = isObj(raw) ? raw : {};
    if (part.type === 'text' && typeof part.text === 'string') return part.text === '' ? [] : [{ text: part.text }];
    dropped.push(`${where}.content[${j}]: a Converse system prompt holds text only`);
    return [];
  });
}

/** Text and image parts; Converse rejects blank text blocks, so empty text is left out. */
function partBlocks(content: unknown, where: string, dropped: string[]): PartBlock[] {
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }];
  if (!Array.isArray(content)) return [];
  return content.flatMap((raw, j): PartBlock[] => {
    const part = isObj(raw) ? raw : {};
    const at = `${where}.content[${j}]`;
    if (part.type === 'text' || part.type === 'refusal') {
      const text = part.type === 'text' ? part.text : part.refusal;
      return typeof text === 'string' && text !== '' ? [{ text }] : [];
    }
    if (part.type === 'image_url') {
      const url = isObj(part.image_url) ? part.image_url.url : part.image_url;
      const image = imageBlock(url, at, dropped);
      return image ? [{ image }] : [];
    }
    dropped.push(`${at}: ${String(part.type)} parts are not supported by Converse`);
    return [];
  });
}

const IMAGE_FORMATS = new Map<string, ImageBlock['format']>([['png', 'png'], ['jpeg', 'jpeg'], ['jpg', 'jpeg'], ['gif', 'gif'], ['webp', 'webp']]);

/** Converse takes image bytes only: it fetches no URLs. */
function imageBlock(url: unknown, at: string, dropped: string[]): ImageBlock | null {
  const data = parseDataUrl(url);
  if (!data) {
    dropped.push(`${at}: Converse takes images as base64 data URLs only, not links`);
    return null;
  }
  const format = data.mime.startsWith('image/') ? IMAGE_FORMATS.get(data.mime.slice('image/'.length)) : undefined;
  if (!format) {
    dropped.push(`${at}: ${data.mime} is not a Converse image format (png, jpeg, gif, webp)`);
    return null;
  }
  return { format, source: { bytes: data.data } };
}

function toolUses(toolCalls: unknown, where: string, dropped: string[]): ContentBlock[] {
  if (!Array.isArray(toolCalls)) return [];
  return toolCalls.flatMap((raw, j): ContentBlock[] => {
    const call = isObj(raw) ? raw : {};
    const fn = isObj(call.function) ? call.function : null;
    if (call.type !== 'function' || !fn || typeof fn.name !== 'string') {
      dropped.push(`${where}.tool_calls[${j}]: only function tool calls have a Converse equivalent`);
      return [];
    }
    return [{ toolUse: { toolUseId: String(call.id ?? ''), name: fn.name, input: toolArguments(fn.arguments, `${where}.tool_calls[${j}]`, dropped) } }];
  });
}


/** A tool's JSON-object answer goes as a `json` block, so the model sees structure rather than a string. */
function toolResultContent(content: unknown, where: string, dropped: string[]): ToolResultContentBlock[] {
  if (typeof content === 'string') {
    const json = parseObject(content);
    return [json ? { json } : { text: content }];
  }
  return partBlocks(content, where, dropped);
}

function parseObject(text: string): Obj | null {
  if (!text.trimStart().startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(text);
    return isObj(value) ? value : null;
  } catch {
    return null;
  }
}

function inferenceConfig(r: ChatRequest): InferenceConfiguration | undefined {
  const config: InferenceConfiguration = {};
  const maxTokens = r.max_completion_tokens ?? r.max_tokens;
  if (typeof maxTokens === 'number') config.maxTokens = maxTokens;
  if (typeof r.temperature === 'number') config.temperature = r.temperature;
  if (typeof r.top_p === 'number') config.topP = r.top_p;
  const stop: unknown[] = typeof r.stop === 'string' ? [r.stop] : Array.isArray(r.stop) ? r.stop : [];
  const stopSequences = stop.filter((s): s is string => typeof s === 'string' && s !== '');
  if (stopSequences.length > 0) config.stopSequences = stopSequences;
  return Object.keys(config).length > 0 ? config : undefined;
}

function toolConfig(r: ChatRequest, messages: Message[], dropped: string[]): ToolConfiguration | undefined {
  const tools = (Array.isArray(r.tools) ? r.tools : []).flatMap((t, i) => toolSpec(t, i, dropped));
  if (tools.length === 0) return undefined;
  if (r.tool_choice === 'none') {
    // Converse cannot forbid offered tools, so leave them out, unless the conversation already
    // holds tool calls: Converse refuses those without a toolConfig.
    if (!messages.some((m) => m.content.some((b) => 'toolUse' in b || 'toolResult' in b))) {
      dropped.push('tools: not sent, because tool_choice is none and Converse cannot forbid offered tools');
      return undefined;
    }
    dropped.push('tool_choice: Converse has no "none"; tools were sent because the conversation holds tool calls, so the model may call one');
    return { tools };
  }
  const toolChoice = choice(r.tool_choice, dropped);
  return toolChoice ? { tools, toolChoice } : { tools };
}

function toolSpec(raw: unknown, i: number, dropped: string[]): { toolSpec: ToolSpecification }[] {
  const tool = isObj(raw) ? raw : {};
  const fn = isObj(tool.function) ? tool.function : null;
  if (tool.type !== 'function' || !fn || typeof fn.name !== 'string') {
    dropped.push(`tools[${i}]: only function tools have a Converse equivalent`);
    return [];
  }
  if (fn.strict === true) dropped.push(`tools[${i}].function.strict: Converse does not enforce tool schemas`);
  const spec: ToolSpecification = { name: fn.name, inputSchema: { json: fn.parameters ?? { type: 'object', properties: {} } } };
  if (typeof fn.description === 'string' && fn.description !== '') spec.description = fn.description;
  return [{ toolSpec: spec }];
}

function choice(value: unknown, dropped: string[]): ToolChoice | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === 'auto') return { auto: {} };
  if (value === 'required') return { any: {} };
  if (isObj(value) && isObj(value.function) && typeof value.function.name === 'string') return { tool: { name: value.function.name } };
  dropped.push(`tool_choice: ${JSON.stringify(value)} has no Converse equivalent`);
  return undefined;
}

const FINISH: Record<StopReason, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  guardrail_intervened: 'content_filter',
  content_filtered: 'content_filter',
  // The model broke its own output format; what it did produce is passed on as it is.
  malformed_model_output: 'stop',
  malformed_tool_use: 'stop',
};

/** A Converse stop reason as an OpenAI finish reason; those AWS adds later read as a plain stop. */
export function finishReason(stopReason: unknown): string {
  return typeof stopReason === 'string' && Object.hasOwn(FINISH, stopReason) ? FINISH[stopReason as StopReason] : 'stop';
}

/** A Converse answer as an OpenAI chat.completion; `requestId` is Bedrock's `x-amzn-requestid`. */
export function fromConverse(
  body: unknown,
  model: string,
  requestId?: string,
): { completion: ChatCompletion; usage: Usage | null } | { invalid: string } {
  const message = isObj(body) && isObj(body.output) && isObj(body.output.message) ? body.output.message : null;
  if (!message || !Array.isArray(message.content)) return { invalid: 'the provider answered without output.message.content' };
  const texts: string[] = [];
  const toolCalls: unknown[] = [];
  for (const block of message.content as unknown[]) {
    if (!isObj(block)) continue;
    if (typeof block.text === 'string') texts.push(block.text);
    else if (isObj(block.toolUse)) {
      const { toolUseId, name, input } = block.toolUse;
      toolCalls.push({ id: String(toolUseId), type: 'function', function: { name: String(name), arguments: JSON.stringify(input ?? {}) } });
    }
    // reasoningContent and other blocks are the model's working, not its answer.
  }
  const { stopReason, usage: tokens } = body as Partial<ConverseResponse>;
  const usage = usageOf(tokens);
  const completion: ChatCompletion = {
    id: `chatcmpl-${requestId ?? randomBytes(12).toString('base64url')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: texts.length > 0 ? texts.join('') : null, refusal: null, ...(toolCalls.length > 0 && { tool_calls: toolCalls }) },
        logprobs: null,
        finish_reason: finishReason(stopReason),
      },
    ],
    ...(usage && { usage }),
  };
  return { completion, usage };
}

const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** Converse counts cached input apart from `inputTokens`; OpenAI's prompt_tokens counts all input. */
export function usageOf(raw: unknown): Usage | null {
  if (!isObj(raw)) return null;
  const read = count(raw.cacheReadInputTokens);
  const write = count(raw.cacheWriteInputTokens);
  const prompt = count(raw.inputTokens) + read + write;
  const completion = count(raw.outputTokens);
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (raw.cacheReadInputTokens !== undefined || raw.cacheWriteInputTokens !== undefined) {
    usage.prompt_tokens_details = { cached_tokens: read, cache_creation_tokens: write };
  }
  return usage;
}
