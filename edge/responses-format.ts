/**
 * The Responses API's objects (OpenAI's `Response`, its output items and
 * usage) made from a chat reply's text, tool calls and usage. The streamed
 * reply's last event carries the same object as the whole reply.
 */
import type { CompletionUsage } from './completion-run';
import { bytesToHex } from './hex';
import type { LogprobsFormatter } from './openai-format';
import type { FunctionTool, ResponsesRequest } from './responses-request';
import type { TokenLogprob } from './token-text';
import { toolCallsOf, toolFinishReason, type ToolCallMode } from './tool-calls';

type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

/** A token's log-probability as the Responses API lists them (chat's entries, as `logprobs` of an output_text). */
export interface OutputLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: never[];
  logprobs: OutputLogprob[];
}

export interface MessageOutput {
  type: 'message';
  id: string;
  status: ItemStatus;
  role: 'assistant';
  content: OutputText[];
}

export interface FunctionCallOutput {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: ItemStatus;
}

export type OutputItem = MessageOutput | FunctionCallOutput;

/** OpenAI's usage, with the edge's speculation figures beside it (as chat's usage has them). */
export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
  speculation: CompletionUsage['speculation'];
}

export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  /** `queued` and `cancelled` only for a background response. */
  status: 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled';
  background: boolean;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: OutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  store: boolean;
  temperature: number;
  text: { format: NonNullable<NonNullable<ResponsesRequest['text']>['format']>; verbosity: 'medium' };
  tool_choice: NonNullable<ResponsesRequest['tool_choice']>;
  tools: FunctionTool[];
  top_logprobs: number;
  top_p: number;
  truncation: 'auto' | 'disabled';
  usage: ResponsesUsage | null;
  user: string | null;
  safety_identifier: string | null;
  /** OpenAI's cache-routing hint, echoed (the pools' prefix cache finds shared prompt beginnings by themselves). */
  prompt_cache_key: string | null;
  metadata: Record<string, string>;
  /** The conversation it is a turn of (`conversation` sent); absent without one. */
  conversation?: { id: string };
}

function randomHex(bytes: number): string {
  return bytesToHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

const RESPONSE_PREFIX = 'resp_';

/** A response's id: the request's hex, as its `x-request-id` carries it. */
export function responseId(requestHex: string): string {
  return `${RESPONSE_PREFIX}${requestHex}`;
}

/**
 * An item's id: `msg_`, `fc_` and the like, then its response's hex and 24
 * random hex digits (48 in all, as OpenAI's). The response's hex in it is how
 * an `item_reference` to it finds the stored response it is in.
 */
export function itemId(prefix: string, responseIdOfItem: string): string {
  return `${prefix}_${responseIdOfItem.slice(RESPONSE_PREFIX.length)}${randomHex(12)}`;
}

/** An item id this server made: a prefix, the response's 24 hex digits, 24 more. */
const ITEM_ID = /^[a-z]+_([0-9a-f]{24})[0-9a-f]{24}$/;

/** The response an item id this server made is in; null for any other id (a client's own). */
export function responseOfItem(id: string): string | null {
  const match = ITEM_ID.exec(id);
  return match ? `${RESPONSE_PREFIX}${match[1]}` : null;
}

/** A function call's id as the model's reply names it (`call_` and hex, as OpenAI's). */
export function callId(): string {
  return `call_${randomHex(12)}`;
}

/** The response as it starts: in progress, no output, no usage. Its fields echo the request's, with OpenAI's defaults. */
export function startedResponse(id: string, model: string, body: ResponsesRequest, tools: FunctionTool[], createdAt = Math.floor(Date.now() / 1000)): ResponseObject {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    background: body.background === true,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model,
    output: [],
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: body.store ?? true,
    temperature: body.temperature ?? 1,
    text: { format: body.text?.format ?? { type: 'text' }, verbosity: 'medium' },
    // OpenAI's default, echoed so with no tools too ("none" only where sent).
    tool_choice: body.tool_choice ?? 'auto',
    tools,
    top_logprobs: body.top_logprobs ?? 0,
    top_p: body.top_p ?? 1,
    truncation: body.truncation ?? 'disabled',
    usage: null,
    user: body.user ?? null,
    safety_identifier: body.safety_identifier ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    metadata: body.metadata ?? {},
  };
}

export function responsesUsage(usage: CompletionUsage): ResponsesUsage {
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details.cached_tokens },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.total_tokens,
    speculation: usage.speculation,
  };
}

/** Tokens' log-probabilities, where asked (`formatter`): chat's entries. */
export function outputLogprobs(formatter: LogprobsFormatter | undefined, tokens: readonly TokenLogprob[]): OutputLogprob[] {
  if (!formatter || tokens.length === 0) return [];
  return (formatter.format(tokens) as { content: OutputLogprob[] }).content;
}

export function outputText(text: string, logprobs: OutputLogprob[]): OutputText {
  return { type: 'output_text', text, annotations: [], logprobs };
}

export function messageItem(id: string, status: ItemStatus, content: OutputText[]): MessageOutput {
  return { type: 'message', id, status, role: 'assistant', content };
}

export function functionCallItem(id: string, call: string, name: string, args: string, status: ItemStatus): FunctionCallOutput {
  return { type: 'function_call', id, call_id: call, name, arguments: args, status };
}

/** How an item ended: cut by the token limit, or whole. */
export function itemStatus(finishReason: string): ItemStatus {
  return finishReason === 'length' ? 'incomplete' : 'completed';
}

/**
 * A finished reply's output items: its function calls (the reply was asked for calls and made whole ones), else its
 * text as a message. "required"'s whole calls are complete also where the token limit fell on the end token after them.
 */
export function outputItems(responseId: string, mode: ToolCallMode | null, text: string, finishReason: string, logprobs: OutputLogprob[]): OutputItem[] {
  const calls = mode ? toolCallsOf(mode, text) : null;
  const status = itemStatus(mode ? toolFinishReason(mode, finishReason, calls) : finishReason);
  if (calls) return calls.map((call) => functionCallItem(itemId('fc', responseId), callId(), call.function.name, call.function.arguments, status));
  return [messageItem(itemId('msg', responseId), status, [outputText(text, logprobs)])];
}

/** The response once its reply ended: `incomplete` where the token limit cut an item of it. */
export function finishedResponse(started: ResponseObject, output: OutputItem[], finishReason: string, usage: CompletionUsage): ResponseObject {
  const cut = finishReason === 'length' && output.some((item) => item.status === 'incomplete');
  return { ...started, status: cut ? 'incomplete' : 'completed', incomplete_details: cut ? { reason: 'max_output_tokens' } : null, output, usage: responsesUsage(usage) };
}

/** The response of a reply that failed. */
export function failedResponse(started: ResponseObject, output: OutputItem[], error: { code: string | null; message: string }): ResponseObject {
  return { ...started, status: 'failed', error: { code: error.code ?? 'server_error', message: error.message }, output };
}
