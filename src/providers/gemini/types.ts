/**
 * The slice of the Gemini API (generativelanguage.googleapis.com, v1beta) that Switchyard speaks,
 * written from Google's REST reference (https://ai.google.dev/api/generate-content): the
 * `models.generateContent` request and response, and the error body every Google API returns.
 * Only the fields we read or write are listed; the official SDK is not used (it needs Node 22).
 */

export interface GeminiFunctionCall {
  /** Newer models may send one; older ones never do. */
  id?: string;
  name: string;
  args?: Record<string, unknown>;
}

export interface GeminiFunctionResponse {
  name: string;
  response: Record<string, unknown>;
}

/** Exactly one data field is set per part; `thought` and `thoughtSignature` qualify it. */
export interface GeminiPart {
  text?: string;
  inlineData?: { mimeType: string; data: string };
  fileData?: { mimeType?: string; fileUri: string };
  functionCall?: GeminiFunctionCall;
  functionResponse?: GeminiFunctionResponse;
  /** A summary of the model's reasoning, not part of the answer. */
  thought?: boolean;
  /** Opaque reasoning state; Gemini 3 refuses a replayed function call without it. */
  thoughtSignature?: string;
}

export type GeminiRole = 'user' | 'model';

export interface GeminiContent {
  role?: GeminiRole;
  parts: GeminiPart[];
}

export interface GeminiFunctionDeclaration {
  name: string;
  description?: string;
  /** JSON Schema as-is; the alternative `parameters` only takes an OpenAPI subset. */
  parametersJsonSchema?: unknown;
}

export type GeminiFunctionCallingMode = 'AUTO' | 'ANY' | 'NONE';

export interface GeminiToolConfig {
  functionCallingConfig: { mode: GeminiFunctionCallingMode; allowedFunctionNames?: string[] };
}

export interface GeminiGenerationConfig {
  temperature?: number;
  topP?: number;
  topK?: number;
  maxOutputTokens?: number;
  stopSequences?: string[];
  seed?: number;
  candidateCount?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  responseMimeType?: string;
  /** JSON Schema as-is; the alternative `responseSchema` only takes an OpenAPI subset. */
  responseJsonSchema?: unknown;
}

export interface GeminiRequest {
  contents: GeminiContent[];
  systemInstruction?: { parts: GeminiPart[] };
  tools?: { functionDeclarations: GeminiFunctionDeclaration[] }[];
  toolConfig?: GeminiToolConfig;
  generationConfig?: GeminiGenerationConfig;
}

/** Candidate.FinishReason; the API may add values, so anything else is accepted as a string. */
export type GeminiFinishReason =
  | 'FINISH_REASON_UNSPECIFIED'
  | 'STOP'
  | 'MAX_TOKENS'
  | 'SAFETY'
  | 'RECITATION'
  | 'LANGUAGE'
  | 'OTHER'
  | 'BLOCKLIST'
  | 'PROHIBITED_CONTENT'
  | 'SPII'
  | 'MALFORMED_FUNCTION_CALL'
  | 'IMAGE_SAFETY'
  | (string & {});

export interface GeminiCandidate {
  index?: number;
  content?: GeminiContent;
  finishReason?: GeminiFinishReason;
}

export interface GeminiUsageMetadata {
  /** Includes cached tokens. */
  promptTokenCount?: number;
  cachedContentTokenCount?: number;
  /** Answer tokens only; thinking is counted apart in thoughtsTokenCount. */
  candidatesTokenCount?: number;
  thoughtsTokenCount?: number;
  /** Input produced by built-in tools (search results and the like). */
  toolUsePromptTokenCount?: number;
  totalTokenCount?: number;
}

export interface GeminiResponse {
  candidates?: GeminiCandidate[];
  /** Set, with no candidates, when the prompt itself was blocked. */
  promptFeedback?: { blockReason?: string };
  usageMetadata?: GeminiUsageMetadata;
  modelVersion?: string;
  responseId?: string;
}

/** google.rpc.Status, as every Google REST API sends it under `error`. */
export interface GoogleErrorBody {
  error?: {
    code?: number;
    message?: string;
    status?: string;
    details?: { '@type'?: string; reason?: string; retryDelay?: string }[];
  };
}
