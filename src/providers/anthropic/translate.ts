import type {
  Base64ImageSource,
  ContentBlockParam,
  DocumentBlockParam,
  ImageBlockParam,
  Message,
  MessageCreateParamsNonStreaming,
  MessageParam,
  StopReason,
  TextBlockParam,
  Tool,
  ToolChoice,
  ToolResultBlockParam,
  ToolUseBlock,
  ToolUseBlockParam,
  Usage as AnthropicUsage,
} from '@anthropic-ai/sdk/resources/messages';
import type { Usage } from '../../store/job-record.js';
import { isObj, type Obj, parseDataUrl, toolArguments, untranslatedFields } from '../openai-request.js';
import type { ChatCompletion, ChatRequest } from '../types.js';

/**
 * OpenAI chat-completions ⇄ Anthropic Messages. Whatever the request asks for that the Messages API
 * cannot express is left out, or changed, and named in `dropped`, so a job never changes meaning
 * silently.
 */

/**
 * The body as sent. The SDK's types no longer list the sampling parameters (the newest models
 * reject them), but the API still takes them for the models that allow them.
 */
type MessagesBody = MessageCreateParamsNonStreaming & { temperature?: number; top_p?: number };

/** Anthropic requires max_tokens; OpenAI callers usually leave it out. */
const DEFAULT_MAX_TOKENS = 4096;

/**
 * The tool a JSON response_format is asked through: the Messages API has no JSON mode, but a forced
 * tool's input is a JSON object shaped by the tool's schema. Its input comes back as the content.
 */
export const JSON_TOOL = 'switchyard_json_response';

type Turn = { role: 'user' | 'assistant'; content: ContentBlockParam[] };
type JsonFormat = { description: string; input_schema: Tool.InputSchema };


/** Request fields the translation reads; every other field is reported unless it is a no-op. */
const MAPPED = new Set([
  'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'user', 'safety_identifier',
  'tools', 'tool_choice', 'parallel_tool_calls', 'response_format',
]);

const WHY_DROPPED: Record<string, string> = {
  seed: 'Anthropic has no sampling seed',
  n: 'Anthropic returns a single choice',
  logprobs: 'Anthropic returns no log probabilities',
  top_logprobs: 'Anthropic returns no log probabilities',
  frequency_penalty: 'Anthropic has no frequency penalty',
  presence_penalty: 'Anthropic has no presence penalty',
  logit_bias: 'Anthropic has no logit bias',
  reasoning_effort: 'Anthropic configures thinking with its own parameters',
};

/** Values that ask for what the Messages API does anyway. */
function isNoOp(key: string, value: unknown): boolean {
  if (value === null || value === undefined) return true;
  switch (key) {
    case 'stream':
    case 'store':
    case 'logprobs':
      return value === false;
    case 'n':
      return value === 1;
    case 'frequency_penalty':
    case 'presence_penalty':
    case 'top_logprobs':
      return value === 0;
    case 'logit_bias':
      return isObj(value) && Object.keys(value).length === 0;
    default:
      return false;
  }
}

export function toMessagesRequest(request: ChatRequest, model: string): { body: MessagesBody; dropped: string[] } {
  const dropped = untranslatedFields(request, { reads: MAPPED, why: WHY_DROPPED, otherwise: 'not part of the Anthropic Messages API', isNoOp });
  const { system, messages } = conversation(request.messages, dropped);
  const body: MessagesBody = {
    model,
    max_tokens: maxTokens(request, dropped),
    messages,
    ...(system && { system }),
    ...sampling(request, dropped),
    ...tooling(request, dropped),
  };
  return { body, dropped };
}

function maxTokens(r: ChatRequest, dropped: string[]): number {
  const asked = r.max_completion_tokens ?? r.max_tokens;
  if (typeof asked === 'number') return asked;
  dropped.push(`max_tokens: not set; Anthropic requires it, sent ${DEFAULT_MAX_TOKENS}`);
  return DEFAULT_MAX_TOKENS;
}

function conversation(input: unknown[], dropped: string[]): { system: string; messages: MessageParam[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  // Anthropic wants user and assistant turns to alternate, so same-role neighbours share a turn;
  // a message left with no blocks (empty text) would only be refused.
  const add = (role: Turn['role'], content: ContentBlockParam[]) => {
    const last = turns.at(-1);
    if (last?.role === role) last.content.push(...content);
    else if (content.length > 0) turns.push({ role, content });
  };
  input.forEach((raw, i) => {
    const m = isObj(raw) ? raw : {};
    const where = `messages[${i}]`;
    switch (m.role) {
      case 'system':
      case 'developer':
        if (turns.length > 0) dropped.push(`${where}: a ${m.role} message inside the conversation was moved to the top-level system prompt`);
        system.push(...texts(m.content));
        break;
      case 'user':
        add('user', userBlocks(m.content, where, dropped));
        break;
      case 'assistant':
        add('assistant', [...assistantText(m.content, where, dropped), ...toolUses(m.tool_calls, where, dropped)]);
        break;
      case 'tool':
        add('user', [toolResult(m)]);
        break;
      default:
        dropped.push(`${where}: role ${String(m.role)} has no Anthropic equivalent`);
    }
  });
  if (input.some((m) => isObj(m) && typeof m.name === 'string')) dropped.push('messages[].name: Anthropic has no participant names');
  return { system: system.join('\n\n'), messages: turns.map(toParam) };
}

function toParam({ role, content }: Turn): MessageParam {
  // A user turn answering tool calls must open with its tool results.
  const ordered = role === 'user' ? [...content.filter(isToolResult), ...content.filter((b) => !isToolResult(b))] : content;
  const only = ordered.length === 1 ? ordered[0] : undefined;
  return { role, content: only?.type === 'text' ? only.text : ordered };
}

const isToolResult = (b: ContentBlockParam) => b.type === 'tool_result';

/** The text of string content or of its text parts. */
function texts(content: unknown): string[] {
  if (typeof content === 'string') return content ? [content] : [];
  if (!Array.isArray(content)) return [];
  return content.flatMap((p) => (isObj(p) && p.type === 'text' && typeof p.text === 'string' && p.text ? [p.text] : []));
}

// Anthropic rejects empty text blocks.
const textBlock = (text: unknown): TextBlockParam[] => (typeof text === 'string' && text ? [{ type: 'text', text }] : []);

function userBlocks(content: unknown, where: string, dropped: string[]): ContentBlockParam[] {
  if (!Array.isArray(content)) return textBlock(content);
  return content.flatMap((part, j): ContentBlockParam[] => {
    const at = `${where}.content[${j}]`;
    const p = isObj(part) ? part : {};
    if (p.type === 'text') return textBlock(p.text);
    if (p.type === 'image_url') return [imageBlock(p.image_url, at, dropped)];
    if (p.type === 'file') {
      const doc = documentBlock(p.file);
      if (doc) return [doc];
      dropped.push(`${at}: only inline PDF file_data has an Anthropic equivalent (a document block)`);
      return [];
    }
    dropped.push(`${at}: ${String(p.type)} parts have no Anthropic equivalent`);
    return [];
  });
}

function imageBlock(imageUrl: unknown, at: string, dropped: string[]): ImageBlockParam {
  const { url, detail } = isObj(imageUrl) ? imageUrl : { url: imageUrl, detail: undefined };
  if (detail !== undefined && detail !== 'auto') dropped.push(`${at}.image_url.detail: Anthropic has no image detail setting`);
  const data = parseDataUrl(url);
  if (!data) return { type: 'image', source: { type: 'url', url: String(url) } };
  // An unsupported media type is left for Anthropic to refuse rather than dropped: the image matters.
  return { type: 'image', source: { type: 'base64', media_type: data.mime as Base64ImageSource['media_type'], data: data.data } };
}

function documentBlock(file: unknown): DocumentBlockParam | null {
  const data = isObj(file) ? parseDataUrl(file.file_data) : null;
  if (data?.mime !== 'application/pdf') return null;
  return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: data.data } };
}

function assistantText(content: unknown, where: string, dropped: string[]): TextBlockParam[] {
  if (!Array.isArray(content)) return textBlock(content);
  return content.flatMap((part, j) => {
    const p = isObj(part) ? part : {};
    if (p.type === 'text') return textBlock(p.text);
    if (p.type === 'refusal') return textBlock(p.refusal);
    dropped.push(`${where}.content[${j}]: ${String(p.type)} parts have no Anthropic equivalent in an assistant turn`);
    return [];
  });
}

function toolUses(toolCalls: unknown, where: string, dropped: string[]): ToolUseBlockParam[] {
  if (!Array.isArray(toolCalls)) return [];
  return toolCalls.flatMap((raw, j): ToolUseBlockParam[] => {
    const at = `${where}.tool_calls[${j}]`;
    const call = isObj(raw) ? raw : {};
    const fn = isObj(call.function) ? call.function : null;
    if (call.type !== 'function' || !fn || typeof fn.name !== 'string') {
      dropped.push(`${at}: only function tool calls have an Anthropic equivalent`);
      return [];
    }
    return [{ type: 'tool_use', id: String(call.id ?? ''), name: fn.name, input: toolArguments(fn.arguments, at, dropped) }];
  });
}


function toolResult(m: Obj): ToolResultBlockParam {
  const content = typeof m.content === 'string' ? m.content : texts(m.content).flatMap(textBlock);
  return { type: 'tool_result', tool_use_id: String(m.tool_call_id ?? ''), content };
}

function sampling(r: ChatRequest, dropped: string[]): Partial<MessagesBody> {
  const out: Partial<MessagesBody> = {};
  if (typeof r.temperature === 'number') {
    out.temperature = Math.min(r.temperature, 1);
    if (r.temperature > 1) dropped.push(`temperature: ${r.temperature} is above Anthropic's maximum of 1, sent 1`);
  }
  if (typeof r.top_p === 'number') {
    if (out.temperature === undefined) out.top_p = r.top_p;
    else dropped.push('top_p: not sent beside temperature; current Claude models refuse the two together');
  }
  const stop: unknown[] = typeof r.stop === 'string' ? [r.stop] : Array.isArray(r.stop) ? r.stop : [];
  const sequences = stop.filter((s): s is string => typeof s === 'string' && s !== '');
  if (sequences.length > 0) out.stop_sequences = sequences;
  const userId = r.safety_identifier ?? r.user;
  if (typeof userId === 'string') out.metadata = { user_id: userId };
  if (typeof r.safety_identifier === 'string' && typeof r.user === 'string') dropped.push('user: metadata.user_id holds safety_identifier instead');
  return out;
}

function tooling(r: ChatRequest, dropped: string[]): Pick<MessagesBody, 'tools' | 'tool_choice'> {
  const tools = (Array.isArray(r.tools) ? r.tools : []).flatMap((t, i) => functionTool(t, i, dropped));
  const format = jsonFormat(r.response_format, dropped);
  if (format && tools.length === 0) return { tools: [{ name: JSON_TOOL, ...format }], tool_choice: { type: 'tool', name: JSON_TOOL } };
  if (format) dropped.push("response_format: JSON output is asked through a forced tool, which would keep the model from the request's own tools");
  if (tools.length === 0) return {};
  const choice = toolChoice(r.tool_choice, r.parallel_tool_calls === false, dropped);
  return { tools, ...(choice && { tool_choice: choice }) };
}

function functionTool(raw: unknown, i: number, dropped: string[]): Tool[] {
  const fn = isObj(raw) && raw.type === 'function' && isObj(raw.function) ? raw.function : null;
  if (!fn || typeof fn.name !== 'string') {
    dropped.push(`tools[${i}]: only function tools have an Anthropic equivalent`);
    return [];
  }
  if (fn.strict === true) dropped.push(`tools[${i}].function.strict: not sent; Anthropic's strict tool use is not available on every Claude model`);
  const schema = isObj(fn.parameters) ? (fn.parameters as Tool.InputSchema) : { type: 'object' as const, properties: {} };
  return [{ name: fn.name, ...(typeof fn.description === 'string' && { description: fn.description }), input_schema: schema }];
}

function jsonFormat(value: unknown, dropped: string[]): JsonFormat | null {
  if (!isObj(value)) return null;
  if (value.type === 'json_object') {
    return { description: 'Answer with a JSON object: this tool input is your whole answer.', input_schema: { type: 'object' } };
  }
  if (value.type !== 'json_schema') return null;
  const spec = isObj(value.json_schema) ? value.json_schema : {};
  if (!isObj(spec.schema) || spec.schema.type !== 'object') {
    dropped.push('response_format: the JSON schema has no object at its root, which an Anthropic tool input must be');
    return null;
  }
  if (spec.strict === true) dropped.push('response_format.json_schema.strict: the schema is a forced tool input schema, which Claude follows but Anthropic does not enforce');
  const description = typeof spec.description === 'string' ? spec.description : 'Answer through this tool: its input is your whole answer.';
  return { description, input_schema: spec.schema as Tool.InputSchema };
}

function toolChoice(value: unknown, serial: boolean, dropped: string[]): ToolChoice | undefined {
  const choice = baseChoice(value, dropped);
  if (!serial || choice?.type === 'none') return choice;
  return { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true };
}

function baseChoice(value: unknown, dropped: string[]): ToolChoice | undefined {
  if (value === undefined || value === null) return undefined;
  if (value === 'auto') return { type: 'auto' };
  if (value === 'required') return { type: 'any' };
  if (value === 'none') return { type: 'none' };
  if (isObj(value) && value.type === 'function' && isObj(value.function) && typeof value.function.name === 'string') {
    return { type: 'tool', name: value.function.name };
  }
  dropped.push(`tool_choice: ${JSON.stringify(value)} has no Anthropic equivalent`);
  return undefined;
}

export const FINISH: Record<StopReason, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

export function isMessage(body: unknown): body is Message {
  return isObj(body) && body.type === 'message' && Array.isArray(body.content);
}

export function toChatCompletion(message: Message, model: string): { completion: ChatCompletion; usage: Usage | null } {
  const text = message.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');
  const calls = message.content.flatMap((b) => (b.type === 'tool_use' ? [b] : []));
  const json = calls.find((c) => c.name === JSON_TOOL);
  const finish = json && message.stop_reason === 'tool_use' ? 'stop' : (FINISH[message.stop_reason ?? 'end_turn'] ?? 'stop');
  const refusal = message.stop_reason === 'refusal' ? (message.stop_details?.explanation ?? null) : null;
  // Thinking and server-tool blocks are the model's working, not its answer.
  const reply = json
    ? { content: JSON.stringify(json.input) }
    : { content: text || null, ...(calls.length > 0 && { tool_calls: calls.map(toolCall) }) };
  const usage = toUsage(message.usage);
  const completion: ChatCompletion = {
    id: message.id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: message.model || model,
    choices: [{ index: 0, message: { role: 'assistant', ...reply, refusal }, logprobs: null, finish_reason: finish }],
    ...(usage && { usage }),
  };
  return { completion, usage };
}

function toolCall(block: ToolUseBlock) {
  return { id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } };
}

const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI's prompt_tokens counts all input. */
export function toUsage(raw: Partial<AnthropicUsage> | undefined): Usage | null {
  if (!isObj(raw)) return null;
  const cached = count(raw.cache_read_input_tokens);
  const written = count(raw.cache_creation_input_tokens);
  const prompt = count(raw.input_tokens) + cached + written;
  const completion = count(raw.output_tokens);
  const thinking = raw.output_tokens_details?.thinking_tokens;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached, cache_creation_tokens: written },
    ...(typeof thinking === 'number' && { completion_tokens_details: { reasoning_tokens: thinking } }),
  };
}
