/**
 * Bodies of the OpenAI-compatible endpoints (zod). Unknown fields are ignored,
 * as OpenAI SDKs send optional fields this server does not act on; known ones
 * that would change the answer and are not implemented are refused by name
 * (UNSUPPORTED_PARAMETERS).
 */
import { z } from 'zod';
import { describeValue, isNonNegativeInteger, logitBiasSchema, MAX_ALLOWED_TOKEN_IDS, MAX_LOGPROB_IDS, MAX_BAD_WORDS, MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS, outputChoicesProblem } from '../shared/protocol';
import { specificIssue } from '../shared/specific-issue';
import type { ToolChoiceField } from './tool-calls';
import { badRequest, TooManyChoicesError, type ApiError } from './api-error';
import { MAX_PROMPT_LOGPROBS } from './prompt-logprobs';

// A lone surrogate (half of a character) never occurs in decoded text; matched on UTF-16 units, it stopped
// a reply in the middle of an emoji and left half of it at the end.
const stopString = z
  .string()
  .min(1)
  .refine((s) => !/\p{Cs}/u.test(s), 'a stop sequence may not hold a lone surrogate (half of a character)');
const stopSchema = z.union([stopString, z.array(stopString).max(MAX_STOP_STRINGS, `stop accepts at most ${MAX_STOP_STRINGS} sequences`)]).nullish();

const streamOptionsSchema = z
  .object({
    // null as absent, as vLLM's StreamOptions (Optional[bool]) and the OpenAI SDKs' typed nulls send it.
    include_usage: z.boolean().nullish(),
    /** vLLM's: with include_usage, every chunk carries its choice's usage so far. */
    continuous_usage_stats: z.boolean().nullish(),
    /** Non-standard: pace the tokens of a burst evenly instead of one chunk per verification step. */
    smooth: z.boolean().optional(),
    /** Non-standard: each text chunk's choice carries `sssd_sources`, its text split by draft source. */
    sources: z.boolean().optional(),
  })
  .nullish();

/** A JSON schema as vLLM takes it: an object, or its JSON text. */
const jsonSchemaFieldSchema = z.union([z.string(), z.record(z.string(), z.unknown())]);

/** A json_schema format's name as OpenAI takes it (chat's response_format, the Responses API's text.format). */
export const formatNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a response format name is 1 to 64 letters, digits, underscores or dashes (as OpenAI has it)');

/** OpenAI's response_format (and vLLM's): its `json_schema.schema` is the schema; absent, any JSON object. */
const responseFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: formatNameSchema,
      description: z.string().nullish(),
      schema: z.record(z.string(), z.unknown()).nullish(),
      /** OpenAI's strict mode: the reply always follows the schema here, so either value is taken. */
      strict: z.boolean().nullish(),
    }),
  }),
]);

/** vLLM's choice list: the reply is one of these texts (bounded as the pool's `choices`). */
const outputChoicesSchema = z.custom<string[]>((v) => outputChoicesProblem(v) === null, { error: (issue) => outputChoicesProblem(issue.input) ?? 'not a list of choices' });

/** Most choices (`n`) a request may ask for: each is a whole generation on a pool. */
export const MAX_CHOICES = 8;
/** Characters of one of `bad_words` (each is tokenized twice at the edge, so bounded; vLLM sets none). */
export const MAX_BAD_WORD_LENGTH = 1024;
/** Characters of a `user` name (OpenAI's field; the per-user cache's scope). */
export const MAX_USER_LENGTH = 256;

/** How a reply is sampled, as chat, completions and the Responses API take it. */
export const samplingFields = {
  temperature: z.number().min(0).max(2).nullish(),
  /** 0 as OpenAI takes it: the smallest nucleus, the most likely token alone. */
  top_p: z.number().min(0).max(1).nullish(),
  /** Non-standard (vLLM): 0 or -1 = no top-k cut. */
  top_k: z.number().min(-1).max(100_000).int().nullish(),
  /** Non-standard (vLLM): tokens less likely than this times the likeliest are cut; 0 = none. */
  min_p: z.number().min(0).max(1).nullish(),
  /** Non-standard (vLLM): > 1 discourages tokens of the prompt and the output, 1 = none. */
  repetition_penalty: z.number().min(0.01).max(10).nullish(),
  /** An int64, as OpenAI takes it (past 2^53 as near as JSON's numbers hold it); see choiceSeed. */
  seed: z
    .number()
    .refine((v) => Number.isInteger(v) && Math.abs(v) <= 2 ** 63, 'seed must be an integer within the int64 range')
    .nullish(),
  /** Non-standard per-request switch: "auto" (default) speculates, "off" decodes plainly. */
  speculation: z.enum(['auto', 'off']).nullish(),
};

/** The served model's name (or "default"). */
export const modelField = z.string().min(1).max(256);

/** OpenAI's bounds on `metadata` (a stored chat completion's, a response's). */
export const MAX_METADATA_KEYS = 16;
export const metadataSchema = z
  .unknown()
  // A record drops a `__proto__` key unseen, its value unchecked (review h135: `{"__proto__": {...}}` was a 200 that kept `{}`).
  .refine((m) => typeof m !== 'object' || m === null || !Object.hasOwn(m, '__proto__'), 'a metadata key may not be __proto__')
  .pipe(
    z
      .record(z.string().max(64, 'a metadata key holds at most 64 characters'), z.string().max(512, 'a metadata value holds at most 512 characters'))
      .refine((m) => Object.keys(m).length <= MAX_METADATA_KEYS, `metadata holds at most ${MAX_METADATA_KEYS} keys`),
  );

/** vLLM's controls of where a reply may end: chat and completions take them, and the Responses API here too (benchmarks force lengths with them). */
export const endControlFields = {
  /** Non-standard (vLLM): no end token, stop token id or stop string before this many output tokens. */
  min_tokens: z.number().int().min(0).nullish(),
  /** Non-standard (vLLM): the end token does not end the reply (it runs to max_tokens or the context). */
  ignore_eos: z.boolean().nullish(),
  /** Non-standard (vLLM): token ids that end the reply as the end token does (`stop_reason` = the id). */
  stop_token_ids: z.array(z.number().int().min(0)).max(MAX_STOP_TOKEN_IDS, `stop_token_ids holds at most ${MAX_STOP_TOKEN_IDS} ids`).nullish(),
};

const commonFields = {
  model: modelField,
  /**
   * OpenAI's. `true` on chat keeps the chat completion for the key
   * (chat-completion-store.ts; completions keep none); `false` also keeps
   * nothing of the request in the user's cache (read to draft from, never
   * written), where a client that said so expects nothing kept.
   */
  store: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: streamOptionsSchema,
  max_tokens: z.number().int().min(1).nullish(),
  ...endControlFields,
  /** Non-standard (vLLM): the stop string (or stop token's text) that ended the reply is sent with it. */
  include_stop_str_in_output: z.boolean().nullish(),
  /** Non-standard (vLLM): the only token ids the reply may hold. */
  allowed_token_ids: z.array(z.number().int().min(0)).min(1, 'allowed_token_ids must name at least one id').max(MAX_ALLOWED_TOKEN_IDS).nullish(),
  /** Non-standard (vLLM): words the reply may not hold, tokenized as vLLM does (edge/bad-words.ts); a word's length bounds its tokenizing. */
  bad_words: z
    .array(z.string().max(MAX_BAD_WORD_LENGTH, `a bad word holds at most ${MAX_BAD_WORD_LENGTH} characters`))
    .max(MAX_BAD_WORDS, `bad_words holds at most ${MAX_BAD_WORDS} words`)
    .nullish(),
  /**
   * Non-standard (vLLM): the reply is one of these texts (`choice`), matches
   * a regular expression (`regex`), is JSON valid under a schema (`json`) or
   * a JSON object (`json_object`), or is a sentence of a GBNF grammar
   * (`grammar`); one of them (edge/structured-output.ts). `structural_tag`
   * is refused by name (rejectOtherStructuredOutputs).
   */
  structured_outputs: z
    .object({
      choice: outputChoicesSchema.nullish(),
      regex: z.string().nullish(),
      /** A context-free grammar in GBNF (shared/structured/grammar-syntax.ts), start rule `root`. */
      grammar: z.string().nullish(),
      json: jsonSchemaFieldSchema.nullish(),
      json_object: z.boolean().nullish(),
      /** The JSON layout's whitespace between tokens, a regex (default `[ ]?`, as outlines'). */
      whitespace_pattern: z.string().nullish(),
      /** vLLM's switch off arbitrary whitespace in JSON: the layout here never has it, so either value is taken. */
      disable_any_whitespace: z.boolean().nullish(),
      /** vLLM's switch off properties a schema does not list: here an object with `properties` holds those alone, so true is taken, false refused (edge/structured-output.ts). */
      disable_additional_properties: z.boolean().nullish(),
    })
    .nullish(),
  /** Non-standard (vLLM, deprecated there for structured_outputs): the same constraints; read only where structured_outputs is not sent, as vLLM does. */
  guided_choice: outputChoicesSchema.nullish(),
  guided_regex: z.string().nullish(),
  guided_grammar: z.string().nullish(),
  guided_json: jsonSchemaFieldSchema.nullish(),
  guided_whitespace_pattern: z.string().nullish(),
  /** OpenAI's: plain text, any JSON object (`json_object`), or JSON valid under a schema (`json_schema`). */
  response_format: responseFormatSchema.nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  /** Token id (as a string) → bias added to its logit, -100..100 (OpenAI's). */
  logit_bias: logitBiasSchema('logit_bias').nullish(),
  stop: stopSchema,
  user: z.string().max(MAX_USER_LENGTH).nullish(),
  /** Choices: one generation each, at most MAX_CHOICES. */
  n: z.number().min(1).max(MAX_CHOICES, `n is at most ${MAX_CHOICES}`).int().nullish(),
  /**
   * OpenAI's predicted outputs: text the reply is expected to resemble (the
   * file being edited, say). Drafted from as the prompt is; the reply is the
   * same with or without it, only sooner where it holds.
   */
  prediction: z
    .object({
      type: z.literal('content'),
      content: z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })).min(1)]),
    })
    .nullish(),
  /** vLLM's: narrows prefix-cache sharing to requests of the key's tenant that give the same salt (absent: the whole tenant); up to vLLM's 1,024 characters (the pool gets a hash of it with the tenant, whatever its length). */
  cache_salt: z.string().min(1).max(1024).nullish(),
  /** Non-standard (vLLM): keep the prompt's last this many tokens (-1: as many as fit beside max_tokens); edge/prompt-truncation.ts. */
  truncate_prompt_tokens: z
    .number()
    .int()
    .refine((v) => v >= 1 || v === -1, 'truncate_prompt_tokens must be an integer >= 1, or -1 (as many as fit beside max_tokens)')
    .nullish(),
  /** Non-standard (vLLM): which end truncate_prompt_tokens keeps: "left" (default, null too) the last tokens, "right" the first. */
  truncation_side: z.enum(['left', 'right']).nullish(),
  /** Non-standard (vLLM): log-probabilities name tokens `token_id:<id>`, not by their text. */
  return_tokens_as_token_ids: z.boolean().nullish(),
  /** Non-standard (vLLM): the response carries the prompt's token ids and each choice's output ids (edge/openai-format.ts places them as vLLM does). */
  return_token_ids: z.boolean().nullish(),
  /** vLLM's; false is refused by name (UNSUPPORTED_PARAMETERS): typed here so that a non-boolean is a 400 naming it. */
  skip_special_tokens: z.boolean().nullish(),
  /** Non-standard (vLLM): with logprobs, each generated token's alternatives are these ids', not the most likely ones' (vLLM's bound: 128; the vocabulary is checked in the handler). */
  logprob_token_ids: z
    .array(z.number().int().min(0))
    .min(1, 'logprob_token_ids must not be an empty list')
    .max(MAX_LOGPROB_IDS, `logprob_token_ids holds at most ${MAX_LOGPROB_IDS} ids`)
    .nullish(),
  /** vLLM's: score the prompt, each token with this many most likely ones (edge/prompt-logprobs.ts; -1, the whole vocabulary, is refused there). */
  prompt_logprobs: z
    .number()
    .int()
    .min(-1, 'prompt_logprobs must be 0 or more (or -1)')
    .max(MAX_PROMPT_LOGPROBS, `prompt_logprobs is at most ${MAX_PROMPT_LOGPROBS}`)
    .nullish(),
  // Last: a body with several bad fields is refused for the first of the others (`n` past its bound among them, whose
  // refusal gives the rate token back), as before they were shared.
  ...samplingFields,
};

/** Most alternatives per token a request may ask log-probabilities for (the pool's limit, OpenAI's for chat). */
const MAX_TOP_LOGPROBS = 20;

/** A completion's prompt: text, a list of one text, token ids, or a list of one token-id list (lm-evaluation-harness's batch of one). */
type CompletionPrompt = string | [string] | number[] | [number[]];

/** Why a value is not a CompletionPrompt, or null. One message per shape a client sends (a union's errors named the wrong branch). */
function promptProblem(v: unknown): string | null {
  if (typeof v === 'string') return null;
  if (!Array.isArray(v)) return 'prompt must be a string, a list of one string, token ids, or a list of one token-id list';
  if (v.length === 0) return 'prompt must not be empty';
  if (v.every((x) => typeof x === 'string')) return v.length === 1 ? null : 'prompt as a list must hold exactly one string (send one request per prompt)';
  if (v.every((x) => Array.isArray(x))) {
    if (v.length !== 1) return 'prompt as a list of token lists must hold exactly one (send one request per prompt)';
    const ids = v[0] as unknown[];
    if (ids.length === 0) return 'prompt[0] must not be empty';
    const bad = ids.findIndex((x) => !isNonNegativeInteger(x));
    return bad < 0 ? null : `prompt[0][${bad}] is ${describeValue(ids[bad])}: token ids are non-negative integers`;
  }
  // A list that mixes text with ids (review h131: the message named the text as a bad id).
  if (v.some((x) => typeof x === 'string')) return 'prompt mixes text and token ids: send a string, a list of one string, or token ids';
  const bad = v.findIndex((x) => !isNonNegativeInteger(x));
  return bad < 0 ? null : `prompt[${bad}] is ${describeValue(v[bad])}: token ids are non-negative integers (or the prompt is a string)`;
}

const promptSchema = z.custom<CompletionPrompt>((v) => promptProblem(v) === null, { error: (issue) => promptProblem(issue.input) ?? 'not a prompt' });

export const completionRequestSchema = z.object({
  ...commonFields,
  /** Log-probabilities of each token and of this many most likely ones (legacy completions shape). */
  logprobs: z.number().min(0).max(MAX_TOP_LOGPROBS).int().nullish(),
  /** Send the prompt back before the completion (with `logprobs`: the prompt's tokens scored too). */
  echo: z.boolean().nullish(),
  /** 0 only with `echo`: score the prompt, generate nothing (what evaluation harnesses send). */
  // Said as the handler says a 0 without echo (review h135: -1 got zod's words, 0 these).
  max_tokens: z.number().int().min(0, 'max_tokens must be at least 1 (0 only with echo: score the prompt)').nullish(),
  /** Chat's newer name for max_tokens, taken here too: a client that moved to it must not get an unbounded reply. */
  max_completion_tokens: z.number().int().min(0, 'max_completion_tokens must be at least 1 (0 only with echo: score the prompt)').nullish(),
  prompt: promptSchema,
  // vLLM's wording (CompletionRequest.check_logprobs): logprobs 0 will do, the alternatives being the listed ids.
}).refine((b) => !b.logprob_token_ids || (b.logprobs !== undefined && b.logprobs !== null), { message: 'when using `logprob_token_ids`, `logprobs` must be set.', path: ['logprob_token_ids'] });
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const contentPartSchema = z.union([
  z.object({ type: z.literal('text'), text: z.string() }),
  // An assistant's refusal, as OpenAI's replies carry it: in a replayed history it is what the assistant said.
  z.object({ type: z.literal('refusal'), refusal: z.string() }),
]);

export const chatMessageSchema = z.object({
  // `function`: OpenAI's deprecated tool role, still in replayed histories.
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(contentPartSchema), z.null()]).optional(),
  // Checked as OpenAI checks it (review h171: any length was taken and stored, and a client built here failed there);
  // not rendered (docs/chat-template.md).
  name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a message's name is 1 to 64 letters, digits, underscores or dashes (as OpenAI has it)").nullish(),
  /** An assistant message's refusal (OpenAI's, with null content): its text, as the content would be. */
  refusal: z.string().nullish(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** A function's name as OpenAI takes it (chat's tools, the Responses API's). */
export const functionNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a function name is 1 to 64 letters, digits, underscores or dashes (as OpenAI has it)');

/** A function the reply may call (chat's `tools`): its parameters a JSON schema, followed as structured outputs' are. */
const toolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name: functionNameSchema,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});

type ToolChoice = ToolChoiceField;

function isToolChoice(v: unknown): v is ToolChoice {
  if (v === 'none' || v === 'auto' || v === 'required') return true;
  const named = v as { type?: unknown; function?: { name?: unknown } | null; allowed_tools?: { mode?: unknown; tools?: unknown } | null } | null;
  if (typeof named !== 'object' || named === null) return false;
  // Its list's entries are checked where they are read (edge/tool-calls.ts), each by its place.
  if (named.type === 'allowed_tools') return typeof named.allowed_tools === 'object' && named.allowed_tools !== null && (named.allowed_tools.mode === 'auto' || named.allowed_tools.mode === 'required') && Array.isArray(named.allowed_tools.tools);
  return named.type === 'function' && typeof named.function === 'object' && named.function !== null && typeof named.function.name === 'string';
}

/** One message for every wrong shape (a union would name only its first branch's). */
const toolChoiceSchema = z.custom<ToolChoice>(isToolChoice, {
  error: 'tool_choice is "none", "auto", "required", {"type": "function", "function": {"name": "my_function"}} or {"type": "allowed_tools", "allowed_tools": {"mode": "auto" or "required", "tools": [{"type": "function", "function": {"name": "my_function"}}]}}',
});

export const chatRequestSchema = z.object({
  ...commonFields,
  messages: z.array(chatMessageSchema).min(1, 'messages must not be empty'),
  /** OpenAI's: kept with the completion where `store` is true (listed and filtered by it). */
  metadata: metadataSchema.nullish(),
  /** Functions the reply may call; served where `tool_choice` is `"required"` or names one (edge/tool-calls.ts). */
  tools: z.array(toolSchema).max(128, 'tools holds at most 128 functions').nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  /** false: `"required"` makes one call at most. */
  parallel_tool_calls: z.boolean().nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().min(0).max(MAX_TOP_LOGPROBS).int().nullish(),
  /** vLLM's values, checked as it checks them; without effect here: the model does not reason, and its template reads no effort. */
  reasoning_effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']).nullish(),
})
  .refine((b) => !b.top_logprobs || b.logprobs === true, { message: 'top_logprobs needs logprobs: true', path: ['top_logprobs'] })
  // vLLM's wording (ChatCompletionRequest.check_logprobs).
  .refine((b) => !b.logprob_token_ids || b.logprobs === true, { message: 'when using `logprob_token_ids`, `logprobs` must be set to true.', path: ['logprob_token_ids'] });
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/**
 * OpenAI parameters that change what a completion is and that this server
 * does not implement, each with the test for its neutral value. Sent at that
 * value (or null) they are fine; otherwise the request is refused by name:
 * ignoring, say, `best_of` or a JSON response format would answer a
 * different request than the one asked, with nothing to tell the caller so.
 */
export type UnsupportedRule = { neutral: (value: unknown, body: Readonly<Record<string, unknown>>) => boolean; hint: string };

/** A prompt given as token ids (or a list of one such list): taken as it is, no BOS added. */
function isTokenIdPrompt(prompt: unknown): boolean {
  const ids = (a: unknown): boolean => Array.isArray(a) && a.length > 0 && a.every((x) => typeof x === 'number');
  return ids(prompt) || (Array.isArray(prompt) && prompt.length === 1 && ids(prompt[0]));
}

/** Whether the request asks for a penalty on repeats (under any server's name), where how far back it looks matters. */
function penaltyAsked(body: Readonly<Record<string, unknown>>): boolean {
  const set = (name: string, neutral: number): boolean => typeof body[name] === 'number' && body[name] !== neutral;
  return set('presence_penalty', 0) || set('frequency_penalty', 0) || set('repetition_penalty', 1) || set('repeat_penalty', 1);
}

const UNSUPPORTED_PARAMETERS: Readonly<Record<string, UnsupportedRule>> = {
  // best_of equal to n asks for what n alone gives; some clients send it so. Below n it is refused, as vLLM does.
  best_of: { neutral: (v, body) => v === (body.n ?? 1), hint: 'equal to n (1 without it)' },
  suffix: { neutral: (v) => v === '', hint: 'empty' },
  tools: { neutral: (v) => Array.isArray(v) && v.length === 0, hint: 'empty' },
  functions: { neutral: (v) => Array.isArray(v) && v.length === 0, hint: 'empty' },
  tool_choice: { neutral: (v) => v === 'none', hint: '"none"' },
  function_call: { neutral: (v) => v === 'none', hint: '"none"' },
  // Text is the only output: an audio reply, or searching the web first, would change the answer.
  modalities: { neutral: (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text', hint: '["text"]' },
  audio: { neutral: () => false, hint: 'null' },
  web_search_options: { neutral: () => false, hint: 'null' },
  // vLLM's extensions beside the ones served (top_k, repetition_penalty, cache_salt, truncate_prompt_tokens, truncation_side, return_tokens_as_token_ids, return_token_ids, bad_words, guided_choice, guided_regex, guided_json, guided_grammar, logprob_token_ids): each changes the answer, and a vLLM user would expect them honoured.
  use_beam_search: { neutral: (v) => v === false, hint: 'false' },
  // vLLM's (vllm/entrypoints/openai/completion/protocol.py, CompletionRequest; chat's the same) that were taken and ignored:
  // a watermark, ending on repeated n-grams and prompt embeddings each change the answer.
  watermarking: { neutral: (v) => v === false, hint: 'false' },
  repetition_detection: { neutral: () => false, hint: 'null' },
  // vLLM's own logits processors (refused there too unless started with --logits-processor-pattern), and the flat
  // fields of its repetition detection (review h118).
  logits_processors: { neutral: (v) => Array.isArray(v) && v.length === 0, hint: 'null' },
  max_repetition_pattern_size: { neutral: (v) => v === 0, hint: '0' },
  min_repetition_pattern_size: { neutral: (v) => v === 0, hint: '0' },
  repetition_min_count: { neutral: (v) => v === 0, hint: '0' },
  // SGLang's names for constraints and controls that are served here under vLLM's names, or not at all (review h118):
  // taken and ignored, a client moving from SGLang got unconstrained text with nothing to say so.
  regex: { neutral: () => false, hint: 'null; guided_regex is that constraint here' },
  ebnf: { neutral: () => false, hint: 'null; guided_grammar takes a grammar here' },
  json_schema: { neutral: () => false, hint: 'null; guided_json, or response_format {type: "json_schema"}, is that constraint here' },
  stop_regex: { neutral: () => false, hint: 'null' },
  min_new_tokens: { neutral: (v) => v === 0, hint: '0; min_tokens is that control here' },
  max_new_tokens: { neutral: () => false, hint: 'null; max_tokens is that control here' },
  // The Responses API's names, sent here by a client ported from it (review h165: dropped, the reply ran to the
  // context's end, or was not JSON). Its text.verbosity is chat's verbosity, ruled on below.
  max_output_tokens: { neutral: () => false, hint: "null; max_tokens is that control here (max_output_tokens is the Responses API's)" },
  text: {
    neutral: (v) => typeof v === 'object' && !Array.isArray(v) && (v as { format?: unknown }).format == null,
    hint: "null; response_format is that control here (text.format is the Responses API's)",
  },
  no_stop_trim: { neutral: (v) => v === false, hint: 'false; include_stop_str_in_output keeps the stop string here' },
  // llama.cpp server's names (tools/server/README.md, /completion and its OpenAI routes), at their neutral values
  // there; taken and ignored, a client moving from llama-server got other text than asked with nothing to say so
  // (review h131). Its fields that leave the answer as it is (cache_prompt, id_slot, n_keep: a prompt past the
  // context is a 400 here anyway) are left to be ignored.
  grammar: { neutral: (v) => v === '', hint: 'null; guided_grammar (or structured_outputs.grammar) takes a grammar here' },
  n_predict: { neutral: (v) => v === -1, hint: '-1; max_tokens is that control here' },
  repeat_penalty: { neutral: (v) => v === 1, hint: '1; repetition_penalty is that control here' },
  // How far back penalties look: here they read the whole output, llama.cpp's -1; with no penalty it changes nothing.
  repeat_last_n: { neutral: (v, body) => v === -1 || !penaltyAsked(body), hint: '-1: penalties read the whole output here' },
  penalty_last_n: { neutral: (v, body) => v === -1 || !penaltyAsked(body), hint: '-1: penalties read the whole output here' },
  n_probs: { neutral: (v) => v === 0, hint: '0; logprobs (on chat, top_logprobs) give the alternatives here' },
  mirostat: { neutral: (v) => v === 0, hint: '0' },
  typical_p: { neutral: (v) => v === 1, hint: '1' },
  tfs_z: { neutral: (v) => v === 1, hint: '1' },
  top_n_sigma: { neutral: (v) => typeof v === 'number' && v <= 0, hint: '-1' },
  min_keep: { neutral: (v) => v === 0 || v === 1, hint: '0' },
  dry_multiplier: { neutral: (v) => v === 0, hint: '0' },
  xtc_probability: { neutral: (v) => v === 0, hint: '0' },
  dynatemp_range: { neutral: (v) => v === 0, hint: '0' },
  // vLLM takes an empty list as none (validate_prompt_and_prompt_embeds).
  prompt_embeds: { neutral: (v) => Array.isArray(v) && v.length === 0, hint: 'null' },
  // This server prints no special token's text (BOS and the end tokens print nothing), as vLLM's default true.
  // Anything but false passes here: the schema refuses a non-boolean as invalid_value.
  skip_special_tokens: { neutral: (v) => v !== false, hint: 'true' },
  // vLLM refuses any other value unless started with priority scheduling ("Got priority 1 but Priority scheduling
  // is not enabled.", vllm/v1/engine/input_processor.py); the pools here have none.
  priority: { neutral: (v) => v === 0, hint: '0: requests are not scheduled by priority here' },
  // A completion's prompt always starts with the model's BOS, as vLLM's does by default; false (no BOS) was ignored.
  // A prompt of token ids gets none either way, as vLLM takes it.
  add_special_tokens: { neutral: (v, body) => v === true || isTokenIdPrompt(body.prompt), hint: 'true (send the prompt as token ids to leave BOS out)' },
};

/** Completions' fields that chat does not have: refused there the same way. Chat's tools are served (edge/tool-calls.ts). */
const { tools: _tools, tool_choice: _toolChoice, ...UNSUPPORTED_BESIDE_TOOLS } = UNSUPPORTED_PARAMETERS;
const CHAT_UNSUPPORTED_PARAMETERS: Readonly<Record<string, UnsupportedRule>> = {
  ...UNSUPPORTED_BESIDE_TOOLS,
  echo: { neutral: (v) => v === false, hint: 'false' },
  // vLLM's chat-template controls: the template is the model's own (docs/chat-template.md), always ending in the assistant's turn.
  chat_template: { neutral: () => false, hint: 'null' },
  // An empty array is no empty object (vLLM's is a dict).
  chat_template_kwargs: { neutral: (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0, hint: 'empty' },
  add_generation_prompt: { neutral: (v) => v === true, hint: 'true' },
  continue_final_message: { neutral: (v) => v === false, hint: 'false' },
  // vLLM's rendered prompt in the response (prompt_text): not served.
  return_prompt_text: { neutral: (v) => v === false, hint: 'false' },
  // vLLM hands documents to the chat template for RAG; the one here places none, so they would go unread.
  documents: { neutral: (v) => Array.isArray(v) && v.length === 0, hint: 'null' },
  // OpenAI's answer length for its own models: the served one reads none, so "low" or "high" would go unheeded (the Responses API's text.verbosity is refused alike).
  verbosity: { neutral: (v) => v === 'medium', hint: '"medium"' },
  // The chat template places BOS itself; vLLM's default for chat is false, and either is taken.
  add_special_tokens: { neutral: (v) => typeof v === 'boolean', hint: 'true or false' },
};

/**
 * Chat's rules as the Responses API applies them (review h165: vLLM's and
 * other servers' names went through it unseen, while chat refused them): less
 * its own fields (max_output_tokens, text) and those it rules on itself.
 */
const {
  max_output_tokens: _maxOutputTokens,
  text: _text,
  functions: _functions,
  function_call: _functionCall,
  skip_special_tokens: _skipSpecialTokens,
  ...RESPONSES_RULES
} = CHAT_UNSUPPORTED_PARAMETERS;
export const RESPONSES_UNSUPPORTED_PARAMETERS: Readonly<Record<string, UnsupportedRule>> = RESPONSES_RULES;

/** Throws a 400 (`unsupported_parameter`) for the first parameter of the endpoint's list sent at a value other than its neutral one. */
export function rejectUnsupportedParameters(body: unknown, endpoint: 'completion' | 'chat' = 'completion'): void {
  if (typeof body !== 'object' || body === null) return;
  const rules = endpoint === 'chat' ? CHAT_UNSUPPORTED_PARAMETERS : UNSUPPORTED_PARAMETERS;
  if (endpoint === 'chat') rejectNonTextParts((body as { messages?: unknown }).messages);
  rejectOtherStructuredOutputs((body as { structured_outputs?: unknown }).structured_outputs);
  refuseByRules(body as Record<string, unknown>, rules);
}

/** Throws a 400 (`unsupported_parameter`) for the first field of `body` a rule names, sent at a value other than its neutral one. */
export function refuseByRules(body: Readonly<Record<string, unknown>>, rules: Readonly<Record<string, UnsupportedRule>>): void {
  for (const [name, value] of Object.entries(body)) {
    const rule = Object.hasOwn(rules, name) ? rules[name] : undefined;
    if (rule && value !== null && value !== undefined && !rule.neutral(value, body)) {
      throw badRequest(`${name} is not supported by this server (leave it out, or send it as ${rule.hint})`, name, 'unsupported_parameter');
    }
  }
}

/** vLLM's structured-output constraints not served (StructuredOutputsParams): each would change the answer. */
const STRUCTURED_OUTPUT_CONSTRAINTS = ['structural_tag'] as const;

/** Refuses `structured_outputs` naming a constraint not served (by its key). */
function rejectOtherStructuredOutputs(value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  for (const key of STRUCTURED_OUTPUT_CONSTRAINTS) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== null && v !== undefined) {
      const param = `structured_outputs.${key}`;
      throw badRequest(`${param} is not supported by this server: of structured outputs choice, regex, grammar, json and json_object are (leave ${key} out, or send it as null)`, param, 'unsupported_parameter');
    }
  }
}

/** Content parts a text model cannot read (images, audio, files): refused by their type, not as a malformed body. */
function rejectNonTextParts(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  for (let i = 0; i < messages.length; i++) {
    const content = (messages[i] as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (let j = 0; j < content.length; j++) {
      const type = (content[j] as { type?: unknown } | null)?.type;
      if (typeof type !== 'string' || type === 'text' || type === 'refusal') continue;
      throw nonTextPartError(`messages.${i}.content.${j}.type`, type);
    }
  }
}

/** As OpenAI and vLLM: options of a stream on a reply that is not one are a 400 (they were silently ignored). */
export function refuseStreamOptionsWithoutStream(body: Readonly<{ stream?: unknown; stream_options?: unknown }>): void {
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    throw badRequest('stream_options is only allowed with stream: true.', 'stream_options', 'invalid_value');
  }
}

/** A content part the model cannot read (an image, a file, audio), refused by its type at `param`. */
export function nonTextPartError(param: string, type: string): ApiError {
  return badRequest(`${param}: content parts of type '${clipped(type, 40)}' are not supported by this server: its model reads text only`, param, 'unsupported_parameter');
}

/** An OpenAI completion or chat body: refused by name where it asks for what this server does not do, else parsed as `parseBody` does. */
export function parseOpenAiBody<T>(schema: z.ZodType<T>, body: unknown, endpoint: 'completion' | 'chat' = 'completion'): T {
  rejectUnsupportedParameters(body, endpoint);
  const parsed = parseBody(schema, body);
  if (endpoint === 'chat') refuseUnansweringToolMessages((body as { messages: unknown[] }).messages);
  return parsed;
}

/**
 * OpenAI's 400s for a `tool` message that answers no call: one without a
 * `tool_call_id`, one not in the run of tool messages right after an
 * assistant message with `tool_calls`, and one whose id is none of that
 * message's calls'. Read from the messages as sent (the schema keeps
 * neither field): taken, the model read a result of a call it never made
 * (/v1/responses refuses such a function_call_output alike). The legacy
 * `function` role is left as it was.
 */
function refuseUnansweringToolMessages(messages: readonly unknown[]): void {
  /** The call ids of the assistant message the current run of tool messages answers; null outside such a run. */
  let calls: Set<unknown> | null = null;
  for (const [i, raw] of messages.entries()) {
    const message = raw as { role?: unknown; tool_call_id?: unknown; tool_calls?: unknown };
    if (message.role !== 'tool') {
      const listed = message.role === 'assistant' && Array.isArray(message.tool_calls) ? message.tool_calls : [];
      calls = listed.length > 0 ? new Set(listed.map((call) => (call as { id?: unknown } | null)?.id)) : null;
      continue;
    }
    const id = message.tool_call_id;
    if (id !== undefined && id !== null && typeof id !== 'string') {
      throw badRequest(`messages.${i}.tool_call_id: expected a string (the id of the call it answers), got ${describeValue(id)}.`, `messages.${i}.tool_call_id`, 'invalid_value');
    }
    if (typeof id !== 'string' || id === '') {
      throw badRequest(`messages.${i}.tool_call_id: messages with role 'tool' must have a 'tool_call_id' (the id of the call it answers).`, `messages.${i}.tool_call_id`, 'invalid_value');
    }
    if (calls === null) {
      throw badRequest(`messages.${i}.role: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.`, `messages.${i}.role`, 'invalid_value');
    }
    if (!calls.has(id)) {
      throw badRequest(`messages.${i}.tool_call_id: '${clipped(id, 100)}' is not the id of one of the 'tool_calls' of the preceding assistant message.`, `messages.${i}.tool_call_id`, 'invalid_value');
    }
  }
}

/** `text`, cut to `max` characters (an ellipsis saying so). */
export function clipped(text: string, max: number): string {
  if (text.length <= max) return text;
  // Not between the two halves of a character: a lone surrogate is invalid in strict JSON decoders.
  const end = /[\ud800-\udbff]/.test(text[max - 1]) ? max - 1 : max;
  return `${text.slice(0, end)}…`;
}

/** Parse or throw a 400 naming the first offending field (OpenAI's `param`). */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = specificIssue(result.error.issues[0]);
  // Bounded: a path holds the client's own keys (a 1 MB logit_bias key came back twice in a 2 MB error).
  const param = issue && issue.path.length > 0 ? clipped(issue.path.map(String).join('.'), 100) : null;
  // A message that opens with its field's name says it once: "n is at most 8", not "n: n is at most 8" (review h141).
  const named = param !== null && issue !== undefined && issue.message.startsWith(param) && !/\w/.test(issue.message.charAt(param.length));
  const message = issue ? clipped(`${param && !named ? `${param}: ` : ''}${issue.message}`, 500) : 'Invalid request body.';
  // More choices than any request may ask: too much at once, not too often, so its rate token comes back (TooManyChoicesError).
  if (param === 'n' && issue?.code === 'too_big') throw new TooManyChoicesError(message);
  throw badRequest(message, param, 'invalid_value') satisfies ApiError;
}
