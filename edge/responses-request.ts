/**
 * OpenAI's Responses API request (`POST /v1/responses`), checked and
 * translated into the chat request it amounts to: `instructions` a system
 * message first, the previous response's conversation, then `input`. What
 * it asks that this server does not do is refused by name, as chat's
 * UNSUPPORTED_PARAMETERS are; errors name the Responses field.
 */
import { z } from 'zod';
import { ApiError, badRequest } from './api-error';
import { MAX_USER_LENGTH, clipped, endControlFields, formatNameSchema, functionNameSchema, metadataSchema, modelField, nonTextPartError, parseBody, refuseByRules, refuseStreamOptionsWithoutStream, RESPONSES_UNSUPPORTED_PARAMETERS, samplingFields, type ChatMessage, type ChatRequest, type UnsupportedRule } from './request-schema';

/** Text a model reads: input_text (a user's, a system's), output_text (an assistant's replayed), refusal (an assistant's). */
const textPartSchema = z.union([
  z.object({ type: z.enum(['input_text', 'output_text']), text: z.string() }),
  z.object({ type: z.literal('refusal'), refusal: z.string() }),
]);
type TextPart = z.infer<typeof textPartSchema>;
const TEXT_PART_TYPES: readonly string[] = ['input_text', 'output_text', 'refusal'];

/**
 * A client's id for an item (an input item, a conversation's): letters, digits, `_` and `-`, 256 at most (the bound
 * of the ids a request names: previous_response_id, an item_reference's), as the ids this server and OpenAI make are.
 * One with a space or a slash (`"a b"` was kept) could not be named as sent in a route's path or a list's `after`.
 * Empty is no id, as before: the item gets one.
 */
const itemIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{0,256}$/, 'an item id is up to 256 letters, digits, underscores or dashes')
  .nullish();

const messageItemSchema = z.object({
  type: z.literal('message').optional(),
  id: itemIdSchema,
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(textPartSchema)], { error: 'expected a string or an array of text parts' }),
});
const functionCallItemSchema = z.object({
  type: z.literal('function_call'),
  id: itemIdSchema,
  call_id: z.string().min(1),
  name: functionNameSchema,
  arguments: z.string(),
});
const functionCallOutputItemSchema = z.object({
  type: z.literal('function_call_output'),
  id: itemIdSchema,
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(textPartSchema)], { error: 'expected a string or an array of text parts' }),
});

/** An item of an earlier stored response, by its id (the AI SDK sends its replies' messages so when `store` is on). */
const itemReferenceSchema = z.object({
  type: z.literal('item_reference'),
  id: z.string().min(1).max(256),
});

type MessageItem = z.infer<typeof messageItemSchema>;
type FunctionCallItem = z.infer<typeof functionCallItemSchema>;
type FunctionCallOutputItem = z.infer<typeof functionCallOutputItemSchema>;
/** An item of `input`, as given or as a reference resolves to. */
export type InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem;
export type ItemReference = z.infer<typeof itemReferenceSchema>;
/** An item of `input` as sent: an item, or a reference to a stored one. */
export type RequestItem = InputItem | ItemReference;

const ITEM_SCHEMAS: Readonly<Record<string, z.ZodType<RequestItem>>> = {
  message: messageItemSchema,
  function_call: functionCallItemSchema,
  function_call_output: functionCallOutputItemSchema,
  item_reference: itemReferenceSchema,
};

/** `text.format`, OpenAI's Responses spelling of chat's response_format (the schema's fields flat). */
const textFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    name: formatNameSchema,
    schema: z.record(z.string(), z.unknown()),
    description: z.string().nullish(),
    strict: z.boolean().nullish(),
  }),
]);
type TextFormat = z.infer<typeof textFormatSchema>;

/**
 * Responses' tools are flat: `{type: "function", name, parameters}`, not chat's `{type, function: {...}}`.
 * `strict` goes on to chat's tool as sent: OpenAI's Responses API defaults it to true, but where it is left out
 * "attempts to use strict validation when the schema is compatible, and falls back to non-strict validation
 * otherwise" (its SDK's words), which is chat's reading of no strict under "auto" here (a schema that cannot be
 * followed is read unconstrained); only `strict: true` as sent makes such a schema the 400.
 */
const functionToolSchema = z.object({
  type: z.literal('function'),
  name: functionNameSchema,
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
export type FunctionTool = z.infer<typeof functionToolSchema>;

type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; name: string } | { type: 'allowed_tools'; mode: 'auto' | 'required'; tools: unknown[] };
function isToolChoice(v: unknown): v is ToolChoice {
  if (v === 'none' || v === 'auto' || v === 'required') return true;
  const named = v as { type?: unknown; name?: unknown; mode?: unknown; tools?: unknown } | null;
  if (typeof named !== 'object' || named === null) return false;
  // Its list's entries are read as chat's (edge/tool-calls.ts), each error naming its place.
  if (named.type === 'allowed_tools') return (named.mode === 'auto' || named.mode === 'required') && Array.isArray(named.tools);
  return named.type === 'function' && typeof named.name === 'string';
}
const toolChoiceSchema = z.custom<ToolChoice>(isToolChoice, {
  error: 'tool_choice is "none", "auto", "required", {"type": "function", "name": "my_function"} or {"type": "allowed_tools", "mode": "auto" or "required", "tools": [{"type": "function", "name": "my_function"}]}',
});

/** A tool_choice in chat's shape: a named function's name under `function`, allowed_tools' list under `allowed_tools` (its entries likewise). */
function chatToolChoice(choice: ToolChoice): NonNullable<ChatRequest['tool_choice']> {
  if (typeof choice === 'string') return choice;
  if (choice.type === 'function') return { type: 'function', function: { name: choice.name } };
  const tools = choice.tools.map((entry) => {
    const fn = entry as { type?: unknown; name?: unknown } | null;
    if (typeof fn === 'object' && fn !== null && fn.type === 'function' && typeof fn.name === 'string') return { type: 'function', function: { name: fn.name } };
    // Any other shape (chat's nested one too) is no entry of this API's: passed on without a name, for chat's check to refuse.
    return { type: typeof fn === 'object' && fn !== null && typeof fn.type === 'string' ? fn.type : null };
  });
  return { type: 'allowed_tools', allowed_tools: { mode: choice.mode, tools } };
}

/** What `include` may ask for: the output text's log-probabilities. */
const LOGPROBS_INCLUDE = 'message.output_text.logprobs';

const responsesRequestSchema = z.object({
  model: modelField,
  /** Items, checked one by one (inputItems): a union's errors would name the wrong branch. */
  input: z.union([z.string(), z.array(z.unknown())], { error: 'expected a string or an array of input items' }),
  instructions: z.string().nullish(),
  previous_response_id: z.string().min(1).max(256).nullish(),
  /** A stored conversation (edge/conversation-store.ts), by id or as `{id}`: its items come before `input`, and the response's are appended to it. */
  conversation: z.union([z.string().min(1).max(256), z.object({ id: z.string().min(1).max(256) })], { error: 'expected a conversation id or {"id": "conv_..."}' }).nullish(),
  max_output_tokens: z.number().int().min(1).nullish(),
  /** OpenAI's temperature and top_p, and vLLM's extras and speculation as chat takes them. */
  ...samplingFields,
  /** vLLM's min_tokens, ignore_eos and stop_token_ids, as chat takes them (review h154: ignore_eos was dropped unseen). */
  ...endControlFields,
  stream: z.boolean().nullish(),
  /** OpenAI's obfuscation pads events against side channels; taken and not done (the text is the same). */
  stream_options: z.object({ include_obfuscation: z.boolean().nullish() }).nullish(),
  text: z
    .object({
      format: textFormatSchema.nullish(),
      verbosity: z.enum(['low', 'medium', 'high']).nullish(),
    })
    .nullish(),
  tools: z.array(z.unknown()).max(128, 'tools holds at most 128 functions').nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  store: z.boolean().nullish(),
  /** Answered at once (status "queued") and run on; polled with GET /v1/responses/{id} (edge/background-response.ts). */
  background: z.boolean().nullish(),
  metadata: metadataSchema.nullish(),
  user: z.string().max(MAX_USER_LENGTH).nullish(),
  safety_identifier: z.string().max(MAX_USER_LENGTH).nullish(),
  // Taken and echoed (review h127: dropped unseen); routing by prompt is the pools' prefix affinity's already.
  prompt_cache_key: z.string().max(MAX_USER_LENGTH).nullish(),
  /** vLLM's, as chat takes it: this request's prefix-cache entries are shared only with requests of the same salt (review h165: dropped). */
  cache_salt: z.string().min(1).max(1024).nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  include: z.array(z.string()).nullish(),
  /** "auto": the conversation's oldest turns dropped to fit the context (edge/conversation-truncation.ts); "disabled": a 400. */
  truncation: z.enum(['auto', 'disabled']).nullish(),
});
export type ResponsesRequest = z.infer<typeof responsesRequestSchema>;

/** Fields that change the answer and are not done here: refused unless at their neutral value (as chat's UNSUPPORTED_PARAMETERS). */
const UNSUPPORTED: Readonly<Record<string, UnsupportedRule>> = {
  prompt: { neutral: () => false, hint: 'null: prompt templates are not served' },
  reasoning: {
    neutral: (v) => {
      const r = v as { effort?: unknown; summary?: unknown; generate_summary?: unknown };
      // An array is no reasoning object (["high"] passed as none asked).
      return typeof v === 'object' && !Array.isArray(v) && (r.effort == null || r.effort === 'none') && r.summary == null && r.generate_summary == null;
    },
    hint: 'null: the model does not reason',
  },
  max_tool_calls: { neutral: () => false, hint: 'null' },
  // vLLM's, taken on chat; here the text is always written without special tokens.
  skip_special_tokens: { neutral: (v) => v === true, hint: 'true' },
};

/**
 * Chat's fields that are not the Responses API's, refused by name with
 * what to send instead: a client ported from chat that sends `max_tokens`
 * would otherwise get a reply to the end of the context (OpenAI answers
 * them "Unknown parameter").
 */
const CHAT_FIELDS: Readonly<Record<string, string>> = {
  messages: 'send them as input',
  max_tokens: 'send max_output_tokens',
  max_completion_tokens: 'send max_output_tokens',
  response_format: 'send text.format',
  logprobs: 'send include: ["message.output_text.logprobs"] with top_logprobs',
  n: 'a response has one output: send one request per reply',
  stop: 'the Responses API has no stop sequences: use chat completions for them',
  frequency_penalty: 'the Responses API has no penalties: use chat completions for them',
  presence_penalty: 'the Responses API has no penalties: use chat completions for them',
  logit_bias: 'the Responses API has no logit_bias: use chat completions for it',
  functions: 'send tools',
  function_call: 'send tool_choice',
  // vLLM's chat extras that change the answer and that this server takes on chat only (reviews h154, h156: dropped unseen).
  include_stop_str_in_output: 'the Responses API has no stop sequences: use chat completions for them',
  allowed_token_ids: 'use chat completions for it',
  bad_words: 'use chat completions for them',
  structured_outputs: 'send text.format, or use chat completions for it',
  guided_json: 'send text.format with a json_schema',
  guided_regex: 'use chat completions for it',
  guided_choice: 'use chat completions for it',
  guided_grammar: 'use chat completions for it',
  prediction: 'use chat completions for it',
  truncate_prompt_tokens: 'send truncation: "auto", which drops the oldest turns to fit',
  truncation_side: 'send truncation: "auto", which drops the oldest turns to fit',
  prompt_logprobs: 'use chat completions for them',
  echo: 'use completions for it',
  guided_whitespace_pattern: 'use chat completions for it',
  guided_decoding_backend: 'use chat completions for it',
  logprob_token_ids: 'use chat completions for them',
  return_tokens_as_token_ids: 'use chat completions for it',
  return_token_ids: 'use chat completions for them',
};

/** The first field the request asks for and this server does not do, refused by name. */
function rejectUnsupported(body: Record<string, unknown>): void {
  for (const [name, instead] of Object.entries(CHAT_FIELDS)) {
    if (body[name] !== undefined && body[name] !== null) {
      throw badRequest(`${name} is not a field of the Responses API (${instead})`, name, 'unsupported_parameter');
    }
  }
  refuseStreamOptionsWithoutStream(body);
  refuseByRules(body, UNSUPPORTED);
  refuseByRules(body, RESPONSES_UNSUPPORTED_PARAMETERS);
  const verbosity = (body.text as { verbosity?: unknown } | null | undefined)?.verbosity;
  if (verbosity != null && verbosity !== 'medium') {
    throw badRequest('text.verbosity is not supported by this server (leave it out, or send it as "medium")', 'text.verbosity', 'unsupported_parameter');
  }
  if (Array.isArray(body.include)) {
    for (const [i, value] of body.include.entries()) {
      if (value !== LOGPROBS_INCLUDE) {
        throw badRequest(`include.${i}: '${clipped(String(value), 80)}' is not supported by this server: of include, only "${LOGPROBS_INCLUDE}" is`, `include.${i}`, 'unsupported_parameter');
      }
    }
  }
  if (Array.isArray(body.tools)) {
    for (const [i, tool] of body.tools.entries()) {
      const type = (tool as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && type !== 'function') {
        throw badRequest(`tools.${i}.type: tools of type '${clipped(type, 40)}' are not supported by this server: only functions are`, `tools.${i}.type`, 'unsupported_parameter');
      }
    }
  }
}

/** `input` as items, each checked by its type; parts other than text, and item types other than messages and function calls, refused by name. */
export function inputItems(input: string | unknown[], at = 'input'): RequestItem[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  return input.map((raw, i) => {
    const item = raw as { type?: unknown; role?: unknown; content?: unknown; output?: unknown } | null;
    if (typeof item !== 'object' || item === null) throw badRequest(`${at}.${i}: an item is an object (a message, a function_call or a function_call_output)`, `${at}.${i}`, 'invalid_value');
    // OpenAI's ItemReference may leave its type out (or null): an item of an id alone is one.
    const type = item.type ?? (item.role !== undefined ? 'message' : typeof (item as { id?: unknown }).id === 'string' ? 'item_reference' : undefined);
    if (typeof type !== 'string' || !Object.hasOwn(ITEM_SCHEMAS, type)) {
      const named = typeof type === 'string' ? `items of type '${clipped(type, 40)}' are` : 'an item without a type or role is';
      throw badRequest(`${at}.${i}.type: ${named} not supported by this server: messages, function_call, function_call_output and item_reference are`, `${at}.${i}.type`, typeof type === 'string' ? 'unsupported_parameter' : 'invalid_value');
    }
    const parts = type === 'function_call_output' ? item.output : item.content;
    if (Array.isArray(parts)) {
      for (const [j, part] of parts.entries()) {
        const partType = (part as { type?: unknown } | null)?.type;
        if (typeof partType === 'string' && !TEXT_PART_TYPES.includes(partType)) {
          throw nonTextPartError(`${at}.${i}.${type === 'function_call_output' ? 'output' : 'content'}.${j}.type`, partType);
        }
      }
    }
    return parseAt(ITEM_SCHEMAS[type], type === 'item_reference' ? { ...(raw as object), type } : raw, `${at}.${i}`);
  });
}

/** parseBody for a part of the body: the error's param is the part's path in it. */
function parseAt<T>(schema: z.ZodType<T>, value: unknown, at: string): T {
  try {
    return parseBody(schema, value);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const param = err.param === null ? at : `${at}.${err.param}`;
    throw badRequest(err.param === null ? `${at}: ${err.message}` : err.message.replace(err.param, param), param, err.code);
  }
}

function partsText(parts: string | readonly TextPart[]): string {
  if (typeof parts === 'string') return parts;
  return parts.map((part) => (part.type === 'refusal' ? part.refusal : part.text)).join('');
}

/**
 * An item as the chat message it is: a function call is the assistant's
 * message with no text (as chat renders a message of tool_calls), its output
 * a tool message.
 */
export function itemMessage(item: InputItem): ChatMessage {
  if (item.type === 'function_call') return { role: 'assistant', content: null };
  if (item.type === 'function_call_output') return { role: 'tool', content: partsText(item.output) };
  return { role: item.role, content: partsText(item.content) };
}

/** The chat request a Responses request amounts to, with what answering it in the Responses shape needs. */
export interface TranslatedRequest {
  chat: ChatRequest;
  body: ResponsesRequest;
  items: InputItem[];
  tools: FunctionTool[];
  /** The previous conversation and this input, as chat messages (no instructions: they are not carried over). */
  conversation: ChatMessage[];
  /** The call_ids of the function calls in that conversation. */
  callIds: string[];
}

/** A Responses body checked: its items as sent (references unresolved), its tools. */
export interface ParsedResponsesBody {
  body: ResponsesRequest;
  items: RequestItem[];
  tools: FunctionTool[];
}

/** Checks a Responses body: refused by name where it asks what is not served, its items and tools each checked. */
export function parseResponsesBody(raw: unknown): ParsedResponsesBody {
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) rejectUnsupported(raw as Record<string, unknown>);
  const body = parseBody(responsesRequestSchema, raw);
  if (body.background === true) {
    // Polled from the store: a response not kept could never be polled (OpenAI refuses it so too).
    if (body.store === false) throw badRequest('background: true needs store (a background response is polled from the store); send store: true or leave it out.', 'background', 'invalid_value');
  }
  if (body.conversation != null && body.previous_response_id != null) {
    // As OpenAI's: the conversation is the context, and a chain would be a second one.
    throw badRequest("Mutually exclusive parameters: send either 'previous_response_id' or 'conversation', not both.", 'conversation', 'invalid_value');
  }
  const items = inputItems(body.input);
  const tools = (body.tools ?? []).map((tool, i) => parseAt(functionToolSchema, tool, `tools.${i}`));
  return { body, items, tools };
}

/**
 * The call_ids of `known` and of the items' calls, in order, each function_call_output checked against the calls made
 * before it (OpenAI's 400 naming the first that answers none): a result for no call would be read by the model as an
 * answer to nothing it asked. Shared by a request's input and a conversation's items route, so neither takes what the
 * other refuses.
 */
export function callsAnswered(items: readonly InputItem[], sent: readonly RequestItem[], known: readonly string[], at = 'input'): string[] {
  const calls = [...known];
  const made = new Set(known);
  for (const [i, item] of items.entries()) {
    if (item.type === 'function_call') {
      calls.push(item.call_id);
      made.add(item.call_id);
    } else if (item.type === 'function_call_output' && !made.has(item.call_id)) {
      // A referenced output has no call_id of its own in the request: the reference is named.
      throw badRequest(`No tool call found for function call output with call_id ${clipped(item.call_id, 100)}.`, sent[i].type === 'item_reference' ? `${at}.${i}.id` : `${at}.${i}.call_id`, 'invalid_value');
    }
  }
  return calls;
}

/**
 * The conversation's call_ids (callsAnswered), and each call of the previous response and of the input checked
 * against the outputs after it (as OpenAI checks them): a call left unanswered is an agent loop that forgot its
 * tool's result.
 */
function checkedCallIds(items: readonly InputItem[], previousCalls: readonly string[], sent: readonly RequestItem[], awaited: readonly string[]): string[] {
  const calls = callsAnswered(items, sent, previousCalls);
  const unanswered = new Set(awaited);
  for (const item of items) {
    if (item.type === 'function_call') unanswered.add(item.call_id);
    else if (item.type === 'function_call_output') unanswered.delete(item.call_id);
  }
  for (const call of unanswered) throw badRequest(`No tool output found for function call ${clipped(call, 100)}.`, 'input', 'invalid_value');
  return calls;
}

/**
 * OpenAI's 400 for an item sent twice: an id twice in the input (an item and
 * a reference to it, two references), or one already in the chain of
 * `previous_response_id`. Taken, the model would read the turn twice, and
 * input_items would list one id twice (a page `after` it never ending).
 */
export function refuseDuplicates(items: readonly InputItem[], previousItemIds: ReadonlySet<string>, at = 'input', repeated: ReadonlySet<number> = new Set()): void {
  const seen = new Set<string>();
  for (const [i, item] of items.entries()) {
    const id = item.id;
    if (!id) continue;
    // A reference repeating an item of the conversation (`repeated`, by index) is that item by its nature, not a copy of it sent again.
    if (seen.has(id) || (previousItemIds.has(id) && !repeated.has(i))) {
      throw badRequest(`Duplicate item found with id ${clipped(id, 100)}. Remove duplicate items from your input and try again.`, `${at}.${i}`, 'invalid_value');
    }
    seen.add(id);
  }
}

/**
 * The chat request a checked body amounts to; `previous` and `previousCalls`
 * are the stored conversation of `previous_response_id` and its calls'
 * ids (looked up by the caller, who refuses a missing one).
 */
export function translateResponsesRequest(
  parsed: ParsedResponsesBody,
  previous: readonly ChatMessage[],
  previousCalls: readonly string[] = [],
  /** The items that `item_reference`s name, by id, as found in this key's stored responses. */
  referenced: ReadonlyMap<string, InputItem> = new Map(),
  /** The ids of the items already in the `previous_response_id` chain. */
  previousItemIds: ReadonlySet<string> = new Set(),
  /** The call_ids of the previous response's own calls: this input must answer each. */
  awaitedCalls: readonly string[] = [],
  /** The items of the request's `conversation`, by id: a reference to one resolves to it (before the stored responses). */
  conversationItems: ReadonlyMap<string, InputItem> = new Map(),
): TranslatedRequest {
  const { body, tools } = parsed;
  // A reference to an item of the conversation repeats it in the reference's place (as a reference to a stored
  // response's item puts it there), under an id of its own (withId): the conversation it is appended to keeps one item an id.
  const repeated = new Set<number>();
  const found = parsed.items.map((item, i) => {
    if (item.type !== 'item_reference') return item;
    const own = conversationItems.get(item.id);
    if (own === undefined) return resolved(item, i, referenced);
    repeated.add(i);
    return own;
  });
  refuseDuplicates(found, previousItemIds, 'input', repeated);
  const items = found.map((item, i): InputItem => (repeated.has(i) ? { ...item, id: null } : item));
  const callIds = checkedCallIds(items, previousCalls, parsed.items, awaitedCalls);
  const conversation = [...previous, ...items.map(itemMessage)];
  const messages: ChatMessage[] = body.instructions ? [{ role: 'system', content: body.instructions }, ...conversation] : conversation;
  if (messages.length === 0) throw badRequest('input must not be empty', 'input', 'invalid_value');
  const logprobs = body.include?.includes(LOGPROBS_INCLUDE) === true;
  const format = body.text?.format;
  const choice = body.tool_choice;
  const chat: ChatRequest = {
    model: body.model,
    messages,
    stream: body.stream,
    max_completion_tokens: body.max_output_tokens,
    temperature: body.temperature,
    top_p: body.top_p,
    top_k: body.top_k,
    min_p: body.min_p,
    repetition_penalty: body.repetition_penalty,
    min_tokens: body.min_tokens,
    ignore_eos: body.ignore_eos,
    stop_token_ids: body.stop_token_ids,
    seed: body.seed,
    speculation: body.speculation,
    cache_salt: body.cache_salt,
    // A response not stored leaves nothing in the user's cache either.
    store: body.store,
    user: body.user ?? body.safety_identifier,
    ...(format
      ? {
          response_format:
            format.type === 'json_schema'
              ? { type: 'json_schema', json_schema: { name: format.name, schema: format.schema, description: format.description, strict: format.strict } }
              : { type: format.type },
        }
      : {}),
    ...(tools.length > 0 ? { tools: tools.map(({ type, ...fn }) => ({ type, function: fn })) } : {}),
    ...(choice != null ? { tool_choice: chatToolChoice(choice) } : {}),
    parallel_tool_calls: body.parallel_tool_calls,
    ...(logprobs ? { logprobs: true, top_logprobs: body.top_logprobs ?? 0 } : {}),
  };
  return { chat, body, items, tools, conversation, callIds };
}

/** The item a reference names, or OpenAI's 400 where this key stores none of that id. */
export function resolved(reference: ItemReference, i: number, referenced: ReadonlyMap<string, InputItem>, at = 'input'): InputItem {
  const item = referenced.get(reference.id);
  if (item === undefined) throw badRequest(`Item with id '${clipped(reference.id, 100)}' not found.`, `${at}.${i}.id`, 'invalid_value');
  return item;
}

/** Chat's fields in errors from the shared path, as the Responses request named them. */
const CHAT_NAMES: ReadonlyArray<[RegExp, string]> = [
  [/\btool_choice\.allowed_tools\.tools\b/g, 'tool_choice.tools'],
  [/\bmax_completion_tokens\b/g, 'max_output_tokens'],
  [/\bresponse_format\.json_schema\.schema\b/g, 'text.format.schema'],
  [/\bresponse_format\.json_schema\.name\b/g, 'text.format.name'],
  [/\bresponse_format\b/g, 'text.format'],
  [/\btools\.(\d+)\.function\./g, 'tools.$1.'],
  [/\bmessages\b/g, 'input'],
];

/** An error of the chat path in the Responses request's words: its param (and the message, where it names it) renamed. */
export function inResponsesTerms(err: unknown): unknown {
  if (!(err instanceof ApiError) || err.param === null) return err;
  let param = err.param;
  for (const [chat, responses] of CHAT_NAMES) param = param.replace(chat, responses);
  if (param === err.param) return err;
  let message = err.message;
  for (const [chat, responses] of CHAT_NAMES) message = message.replace(chat, responses);
  return new ApiError(err.status, message, err.type, err.code, param, err.retryAfterS, err.shouldRetry);
}
