import { parseDataUrl, toolArguments, untranslatedFields } from '../openai-request.js';
import type { ChatRequest } from '../types.js';
import type {
  GeminiContent,
  GeminiFunctionDeclaration,
  GeminiGenerationConfig,
  GeminiPart,
  GeminiRequest,
  GeminiRole,
  GeminiToolConfig,
} from './types.js';

/**
 * OpenAI chat-completions body → Gemini `generateContent` body. Whatever cannot be said in Gemini's
 * terms is left out and named in `dropped`, so a caller can see what this target ignored.
 */
export function toGeminiRequest(request: ChatRequest): { body: GeminiRequest; dropped: string[] } {
  const dropped: string[] = [];
  const { contents, system } = toContents(request.messages, dropped);
  const body: GeminiRequest = { contents };
  if (system.length > 0) body.systemInstruction = { parts: system };

  const declarations = toFunctionDeclarations(request.tools, dropped);
  if (declarations.length > 0) {
    body.tools = [{ functionDeclarations: declarations }];
    const toolConfig = toToolConfig(request.tool_choice, dropped);
    if (toolConfig) body.toolConfig = toolConfig;
  }

  const generationConfig = toGenerationConfig(request, dropped);
  if (Object.keys(generationConfig).length > 0) body.generationConfig = generationConfig;

  dropped.push(...unsupportedParams(request));
  return { body, dropped };
}

// --- messages --------------------------------------------------------------------------------

type OpenAIMessage = Record<string, unknown> & { role?: unknown; content?: unknown };
type OpenAIToolCall = { id?: unknown; function?: { name?: unknown; arguments?: unknown }; extra_content?: { google?: { thought_signature?: unknown } } };
type OpenAIContentPart = {
  type?: unknown;
  text?: unknown;
  image_url?: { url?: unknown };
  input_audio?: { data?: unknown; format?: unknown };
  file?: { file_data?: unknown };
};

/**
 * Gemini 3 refuses a replayed function call that has no thought signature. Calls that another
 * provider made, or whose signature the caller did not keep, carry this value instead, which
 * Google documents for exactly that case (ai.google.dev/gemini-api/docs/thought-signatures).
 */
const SKIP_THOUGHT_SIGNATURE = 'skip_thought_signature_validator';

function toContents(messages: unknown[], dropped: string[]): { contents: GeminiContent[]; system: GeminiPart[] } {
  const contents: GeminiContent[] = [];
  const system: GeminiPart[] = [];
  // Gemini's function responses carry the function's name, where OpenAI's tool messages only carry the call's id.
  const callNames = new Map<string, string>();
  // Gemini wants user and model turns to alternate (parallel function results in one turn), so runs merge.
  const push = (role: GeminiRole, parts: GeminiPart[]) => {
    if (parts.length === 0) return;
    const last = contents.at(-1);
    if (last?.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };

  messages.forEach((raw, i) => {
    const m = (raw ?? {}) as OpenAIMessage;
    // A tool message's name is its function's (and used as such); any other name is a participant's.
    if (typeof m.name === 'string' && m.role !== 'tool') dropped.push(`messages[${i}].name: Gemini has no participant names`);
    switch (m.role) {
      case 'system':
      case 'developer':
        // Gemini has one system instruction per request, wherever OpenAI's system messages sit.
        system.push(...textParts(m.content));
        break;
      case 'user':
        push('user', userParts(m.content, `messages[${i}]`, dropped));
        break;
      case 'assistant':
        push('model', [...textParts(m.content), ...functionCallParts(m.tool_calls, callNames, `messages[${i}]`, dropped)]);
        break;
      case 'tool':
        push('user', [functionResponsePart(m, callNames, `messages[${i}]`, dropped)]);
        break;
      default:
        dropped.push(`messages[${i}]: role ${JSON.stringify(m.role)} has no Gemini equivalent`);
    }
  });
  return { contents, system };
}

/** Text of a string or of the text parts of an array: all OpenAI allows in system, assistant (plus refusals) and tool content. */
function textParts(content: unknown): GeminiPart[] {
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }];
  if (!Array.isArray(content)) return [];
  return content.flatMap((p: { type?: unknown; text?: unknown; refusal?: unknown }) => {
    const text = p?.type === 'refusal' ? p.refusal : p?.text;
    return typeof text === 'string' && text !== '' ? [{ text }] : [];
  });
}

function userParts(content: unknown, where: string, dropped: string[]): GeminiPart[] {
  if (!Array.isArray(content)) return textParts(content);
  return content.flatMap((p: OpenAIContentPart, j): GeminiPart[] => {
    const part = contentPart(p);
    if (part) return [part];
    dropped.push(`${where}.content[${j}]: part type ${JSON.stringify(p?.type)} not translated`);
    return [];
  });
}

function contentPart(p: OpenAIContentPart): GeminiPart | null {
  switch (p?.type) {
    case 'text':
      return typeof p.text === 'string' ? { text: p.text } : null;
    case 'image_url': {
      const url = p.image_url?.url;
      return typeof url === 'string' ? mediaPart(url) : null;
    }
    case 'input_audio': {
      const data = p.input_audio?.data;
      return typeof data === 'string' ? { inlineData: { mimeType: audioMime(String(p.input_audio?.format)), data } } : null;
    }
    case 'file': {
      const fileData = p.file?.file_data;
      return typeof fileData === 'string' ? dataUrlPart(fileData) : null;
    }
    default:
      return null;
  }
}

function mediaPart(url: string): GeminiPart | null {
  if (url.startsWith('data:')) return dataUrlPart(url);
  if (/^https?:\/\//i.test(url)) return { fileData: { mimeType: guessImageMime(url), fileUri: url } };
  return null;
}

function dataUrlPart(url: string): GeminiPart | null {
  const data = parseDataUrl(url);
  return data ? { inlineData: { mimeType: data.mime, data: data.data } } : null;
}

const IMAGE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  heic: 'image/heic',
  heif: 'image/heif',
};

/** Gemini needs a MIME type for a URL; OpenAI callers never give one, so the extension decides. */
function guessImageMime(url: string): string {
  const ext = /\.([a-z0-9]+)(?:[?#].*)?$/i.exec(url)?.[1]?.toLowerCase();
  return (ext && IMAGE_TYPES[ext]) || 'image/jpeg';
}

const audioMime = (format: string) => (format === 'mp3' ? 'audio/mpeg' : `audio/${format}`);

function functionCallParts(toolCalls: unknown, callNames: Map<string, string>, where: string, dropped: string[]): GeminiPart[] {
  if (!Array.isArray(toolCalls)) return [];
  return toolCalls.map((raw: OpenAIToolCall, j): GeminiPart => {
    const name = String(raw?.function?.name ?? '');
    if (typeof raw?.id === 'string') callNames.set(raw.id, name);
    const part: GeminiPart = { functionCall: { name, args: toolArguments(raw?.function?.arguments, `${where}.tool_calls[${j}]`, dropped) } };
    // Google puts the signature on the first call of a step only; its OpenAI-compatible API hands it out here.
    const signature = raw?.extra_content?.google?.thought_signature;
    if (typeof signature === 'string') part.thoughtSignature = signature;
    else if (j === 0) part.thoughtSignature = SKIP_THOUGHT_SIGNATURE;
    return part;
  });
}


function functionResponsePart(m: OpenAIMessage, callNames: Map<string, string>, where: string, dropped: string[]): GeminiPart {
  const id = String(m.tool_call_id ?? '');
  let name = callNames.get(id) ?? (typeof m.name === 'string' ? m.name : undefined);
  if (name === undefined) {
    dropped.push(`${where}: tool_call_id ${JSON.stringify(id)} matches no earlier tool call, so its function name is unknown`);
    name = id;
  }
  const text = textParts(m.content)
    .map((p) => p.text)
    .join('');
  // Gemini wants an object; `result` is one of the keys its docs suggest for a function's output.
  return { functionResponse: { name, response: { result: parseJsonOr(text) } } };
}

function parseJsonOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// --- tools ---------------------------------------------------------------------------------------

/**
 * OpenAI parameters are JSON Schema; `parametersJsonSchema` takes that as-is (additionalProperties,
 * $ref, anyOf and all), where `parameters` would need the schema cut down to Google's OpenAPI
 * subset and so change what the model may produce. Only the `$schema` marker is removed.
 */
function toFunctionDeclarations(tools: unknown, dropped: string[]): GeminiFunctionDeclaration[] {
  if (!Array.isArray(tools)) return [];
  return tools.flatMap((t: { type?: unknown; function?: { name?: unknown; description?: unknown; parameters?: unknown } }, i) => {
    const fn = t?.function;
    if (t?.type !== 'function' || typeof fn?.name !== 'string') {
      dropped.push(`tools[${i}]: only function tools translate to Gemini`);
      return [];
    }
    const declaration: GeminiFunctionDeclaration = { name: fn.name };
    if (typeof fn.description === 'string') declaration.description = fn.description;
    if (fn.parameters !== undefined) declaration.parametersJsonSchema = withoutSchemaMarker(fn.parameters);
    return [declaration];
  });
}

function withoutSchemaMarker(schema: unknown): unknown {
  if (!schema || typeof schema !== 'object' || !('$schema' in schema)) return schema;
  const { $schema: _marker, ...rest } = schema as Record<string, unknown>;
  return rest;
}

function toToolConfig(choice: unknown, dropped: string[]): GeminiToolConfig | null {
  if (choice === undefined || choice === null) return null;
  if (choice === 'auto') return { functionCallingConfig: { mode: 'AUTO' } };
  if (choice === 'required') return { functionCallingConfig: { mode: 'ANY' } };
  if (choice === 'none') return { functionCallingConfig: { mode: 'NONE' } };
  const name = (choice as { function?: { name?: unknown } }).function?.name;
  if (typeof name === 'string') return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [name] } };
  dropped.push('tool_choice: this form has no Gemini equivalent');
  return null;
}

// --- generation config ---------------------------------------------------------------------------

const NUMERIC: [string, keyof GeminiGenerationConfig][] = [
  ['temperature', 'temperature'],
  ['top_p', 'topP'],
  ['top_k', 'topK'],
  ['seed', 'seed'],
  ['n', 'candidateCount'],
  ['presence_penalty', 'presencePenalty'],
  ['frequency_penalty', 'frequencyPenalty'],
];

function toGenerationConfig(request: ChatRequest, dropped: string[]): GeminiGenerationConfig {
  const config: Record<string, unknown> = {};
  for (const [from, to] of NUMERIC) if (typeof request[from] === 'number') config[to] = request[from];
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (typeof maxTokens === 'number') config.maxOutputTokens = maxTokens;
  if (typeof request.stop === 'string') config.stopSequences = [request.stop];
  else if (Array.isArray(request.stop)) config.stopSequences = request.stop.filter((s) => typeof s === 'string');
  Object.assign(config, responseFormat(request.response_format, dropped));
  return config as GeminiGenerationConfig;
}

function responseFormat(format: unknown, dropped: string[]): GeminiGenerationConfig {
  const f = format as { type?: unknown; json_schema?: { schema?: unknown } } | undefined;
  if (!f || f.type === 'text') return {};
  if (f.type === 'json_object') return { responseMimeType: 'application/json' };
  if (f.type === 'json_schema') {
    // Same reasoning as for tools: `responseJsonSchema` keeps the caller's JSON Schema whole.
    const schema = f.json_schema?.schema;
    return { responseMimeType: 'application/json', ...(schema !== undefined && { responseJsonSchema: withoutSchemaMarker(schema) }) };
  }
  dropped.push(`response_format: type ${JSON.stringify(f.type)} has no Gemini equivalent`);
  return {};
}

// --- everything else -------------------------------------------------------------------------------

const TRANSLATED = new Set([
  'model',
  'messages',
  'tools',
  'tool_choice',
  'response_format',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  ...NUMERIC.map(([from]) => from),
]);

/** Values that ask for what Gemini does anyway, so leaving them out changes nothing. */
const HARMLESS: Record<string, unknown> = { stream: false, logprobs: false, parallel_tool_calls: true, store: false };

const WHY: Record<string, string> = {
  logit_bias: 'Gemini has no token bias',
  logprobs: 'log probabilities are not translated',
  top_logprobs: 'log probabilities are not translated',
  parallel_tool_calls: 'Gemini cannot forbid parallel function calls',
  reasoning_effort: 'Gemini sets thinking per model family (thinkingBudget or thinkingLevel); not translated',
  user: 'Gemini has no end-user field',
  stream: 'the answer comes back whole',
};

function unsupportedParams(request: ChatRequest): string[] {
  const isNoOp = (key: string, value: unknown) => value === undefined || value === null || (Object.hasOwn(HARMLESS, key) && HARMLESS[key] === value);
  return untranslatedFields(request, { reads: TRANSLATED, why: WHY, otherwise: 'not part of the Gemini API', isNoOp });
}
