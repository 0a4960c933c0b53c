/**
 * The parts of the Bedrock Runtime Converse API (2023-09-30) that Switchyard sends and reads, as
 * they appear in JSON on the wire (blobs are base64 strings there).
 * Reference: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
 */

export type ImageFormat = 'png' | 'jpeg' | 'gif' | 'webp';

export interface ImageBlock {
  format: ImageFormat;
  source: { bytes: string };
}

export type ToolResultContentBlock = { text: string } | { json: unknown } | { image: ImageBlock };

export interface ToolUseBlock {
  toolUseId: string;
  name: string;
  input: unknown;
}

export interface ToolResultBlock {
  toolUseId: string;
  content: ToolResultContentBlock[];
  status?: 'success' | 'error';
}

export type ContentBlock =
  | { text: string }
  | { image: ImageBlock }
  | { toolUse: ToolUseBlock }
  | { toolResult: ToolResultBlock };

export type ConversationRole = 'user' | 'assistant';

export interface Message {
  role: ConversationRole;
  content: ContentBlock[];
}

export type SystemContentBlock = { text: string };

export interface InferenceConfiguration {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stopSequences?: string[];
}

export interface ToolSpecification {
  name: string;
  description?: string;
  inputSchema: { json: unknown };
}

export type ToolChoice = { auto: Record<string, never> } | { any: Record<string, never> } | { tool: { name: string } };

export interface ToolConfiguration {
  tools: { toolSpec: ToolSpecification }[];
  toolChoice?: ToolChoice;
}

/** The JSON body of `POST /model/{modelId}/converse` (the model id travels in the path). */
export interface ConverseRequest {
  messages: Message[];
  system?: SystemContentBlock[];
  inferenceConfig?: InferenceConfiguration;
  toolConfig?: ToolConfiguration;
}

/** Answers may also hold `reasoningContent` blocks (the model's working), which are not read. */
export type StopReason =
  | 'end_turn'
  | 'tool_use'
  | 'max_tokens'
  | 'stop_sequence'
  | 'guardrail_intervened'
  | 'content_filtered'
  | 'model_context_window_exceeded'
  | 'malformed_model_output'
  | 'malformed_tool_use';

export interface TokenUsage {
  /** Input tokens not read from or written to the prompt cache. */
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  cacheReadInputTokens?: number;
  cacheWriteInputTokens?: number;
}

export interface ConverseResponse {
  output: { message?: Message };
  stopReason: StopReason;
  usage: TokenUsage;
  metrics: { latencyMs: number };
}
