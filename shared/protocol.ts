/**
 * Edge ↔ pool protocol, version 1. Documented in docs/protocol.md; this file
 * is the single source of truth for shapes (zod schemas, shared by both ends).
 *
 * Transport: HTTP/1.1, bearer token `SSSD_POOL_TOKEN` on every request except
 * GET /healthz and GET /metrics. A generation is one POST whose response body is
 * a stream of events: binary frames where the request accepts them
 * (pool-event-frames.ts), newline-delimited JSON otherwise (pool-event-lines.ts).
 * Binary payloads in requests (draft tries) travel base64-encoded inside the
 * JSON body.
 */
import { MAX_GRAMMAR_CHARS } from './structured/grammar-syntax';
import { z } from 'zod';
import type { FusionWeights } from './drafting/fusion';

export const PROTOCOL_VERSION = 1;

export const speculationMethods = ['sssd', 'pld', 'context', 'off'] as const;
export type SpeculationMethod = (typeof speculationMethods)[number];

/** Whether a generation of `method` drafts from edge tries (shipped or pushed): `sssd` alone; the others never read one. */
export function followsEdgeTries(method: SpeculationMethod): boolean {
  return method === 'sssd';
}

/** Most tokens a request's logitBias may name (OpenAI's limit). */
export const MAX_LOGIT_BIAS = 1024;

/**
 * Token id (a decimal string) → bias, -100..100, at most MAX_LOGIT_BIAS of
 * them, counted before each key is checked: a body of 580k keys held the
 * pool's one thread (every stream) for 6 s in zod, and at the edge, where
 * CPU is billed, a 1 MiB body of keys took ~0.3 s. `field` names it in errors.
 */
export function logitBiasSchema(field: string) {
  return z
    .custom<Record<string, unknown>>((b) => typeof b !== 'object' || b === null || Array.isArray(b) || Object.keys(b).length <= MAX_LOGIT_BIAS, {
      error: `${field} holds at most ${MAX_LOGIT_BIAS} tokens`,
    })
    // zod's record drops a `__proto__` key (JSON.parse makes it an own one) before its key check: refused here, not ignored.
    .refine((b) => typeof b !== 'object' || b === null || !Object.hasOwn(b, '__proto__'), { error: `${field} keys are token ids: whole numbers from 0, written without leading zeros` })
    .pipe(z.record(z.string().regex(/^(0|[1-9]\d{0,8})$/, `${field} keys are token ids: whole numbers from 0, written without leading zeros`), z.number().min(-100).max(100)));
}

export const samplingSchema = z.object({
  temperature: z.number().min(0).max(2).default(0),
  topP: z.number().gt(0).max(1).default(1),
  /** vLLM's min-p: tokens less likely than this times the likeliest are cut (0 = none). Added within version 1: older pools ignore it. */
  minP: z.number().min(0).max(1).default(0),
  /** 0 = no top-k cut. */
  topK: z.number().min(0).max(100_000).int().default(0),
  /** Per-request seed; absent = drawn by the pool. */
  seed: z.number().int().min(0).optional(), // int(): a safe integer, below 2^53
  /** OpenAI's: minus this × times a token was generated, from its logit (0 = none). */
  frequencyPenalty: z.number().min(-2).max(2).default(0),
  /** OpenAI's: minus this from the logit of every token generated at least once (0 = none). */
  presencePenalty: z.number().min(-2).max(2).default(0),
  /** vLLM's: a positive logit of a token in the prompt or the output divided by this, a negative one multiplied (1 = none); at least 0.01, as a logit divided by less overflows to infinity. */
  repetitionPenalty: z.number().min(0.01).max(10).default(1),
  /** OpenAI's: added to the logits of these token ids (decimal strings), before the penalties; -100 bans, 100 forces. */
  logitBias: logitBiasSchema('logitBias').optional(),
});
export type SamplingParams = z.infer<typeof samplingSchema>;

/**
 * How deep a request body's arrays and objects may nest at a pool: the protocol's deepest (`badWords`, a list of
 * lists) is 3. A body past it is a 400 before it is parsed (shared/json-nesting.ts): 3 million nested arrays, 6 MB,
 * held the pool's one thread ~3.5 s in JSON.parse (review h213).
 */
export const MAX_BODY_NESTING = 64;

/** Most alternatives a generation may ask log-probabilities for, per token (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;

/** Most ids a generation may ask log-probabilities of by id (`logprobIds`; vLLM's MAX_LOGPROB_TOKEN_IDS). */
export const MAX_LOGPROB_IDS = 128;

/** Most stop token ids a generation may name. */
export const MAX_STOP_TOKEN_IDS = 64;

/** Most stop strings a request may name (the edge's `stop`, as OpenAI's), and so the pool's `stopStrings`. */
export const MAX_STOP_STRINGS = 4;
/**
 * Most characters (UTF-16 code units, as the edge matches them) of one stop
 * string the pool takes. The edge takes longer ones and finds them itself;
 * it sends the pool only those within this.
 */
export const MAX_STOP_STRING_CHARS = 1024;

/**
 * The rules by which the pool finds a stop string where the edge does (the
 * decoders' text, min_tokens, silent ids: edge/token-text.ts,
 * edge/stop-matcher.ts, gpu-pool/scheduler/stop-strings.ts). Bumped with any
 * change to them: a request that names another version (`stopMatcher`) has
 * its stop strings left to its sender, so a pool and an edge of releases
 * whose rules differ never end an answer where the edge would not (review
 * h122). A request that names none asks for the pool's own rules, as a
 * client that cuts no text itself does (review h174); the pool says its
 * version in /v1/info.
 */
export const STOP_MATCHER_VERSION = 1;

/** Most entries of `stopStrings` a pool reads (a bound on the work; it follows only those within its limits above). */
const MAX_STOP_STRINGS_SENT = 64;

/**
 * Whether the pool follows stop string `s`: one within its length, no empty
 * one (it would end every generation at once) nor one with half a character
 * (decoded text has none). One it does not follow is the edge's to find, which
 * ends the text no later: never refused, so an edge of a later release with
 * other limits is served.
 */
export function followedStopString(s: string): boolean {
  return s.length >= 1 && s.length <= MAX_STOP_STRING_CHARS && !/\p{Cs}/u.test(s);
}

/** Most ids an allowed-token list may hold (past any vocabulary served here). */
export const MAX_ALLOWED_TOKEN_IDS = 262_144;

/** Most bad words (token-id sequences) a generation may name, and most ids in all of them (vLLM's VLLM_MAX_NUM_BAD_WORDS and VLLM_MAX_BAD_WORDS_TOTAL_TOKENS). */
export const MAX_BAD_WORDS = 128;
export const MAX_BAD_WORDS_TOKENS = 1024;

/** Why `value` is no list of at most MAX_BAD_WORDS non-empty token-id lists of MAX_BAD_WORDS_TOKENS ids in all; null when it is one. Counted before zod reads the elements. */
function badWordsProblem(value: unknown): string | null {
  if (!Array.isArray(value)) return 'expected an array of token-id sequences';
  if (value.length > MAX_BAD_WORDS) return `at most ${MAX_BAD_WORDS} sequences, got ${value.length}`;
  let total = 0;
  for (let i = 0; i < value.length; i++) {
    const word: unknown = value[i];
    if (!Array.isArray(word) || word.length === 0) return `[${i}] = ${describeValue(word)} is not a non-empty array of token ids`;
    total += word.length;
    if (total > MAX_BAD_WORDS_TOKENS) return `at most ${MAX_BAD_WORDS_TOKENS} token ids in all`;
    for (let j = 0; j < word.length; j++) {
      const t: unknown = word[j];
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0x7fffffff) return `[${i}][${j}] = ${describeValue(t)} is not a token id (an integer >= 0)`;
    }
  }
  return null;
}

const badWordsSchema = z.custom<number[][]>((value) => badWordsProblem(value) === null, { error: (issue) => badWordsProblem(issue.input) ?? 'not a list of token-id sequences' });

/** Most prompt tokens a request may carry: past any context served here, and few enough to check in milliseconds. */
export const MAX_PROMPT_IDS = 1 << 20;

/** A token id, a count, a length: what the protocol's integers are. */
export function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** A bad element, briefly: never stringified whole (an array nested 10,000 deep overflowed the stack, a 500). */
export function describeValue(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 40));
  return String(value).slice(0, 40);
}

/** Why `value` is no list of 1..`max` token ids (integers in [0, 2^31)), naming the first bad one; null when it is one. The count first: a list too long is refused without reading it. */
function tokenIdsProblem(value: unknown, max: number): string | null {
  if (!Array.isArray(value)) return 'expected an array of token ids';
  if (value.length === 0) return 'at least one token id';
  if (value.length > max) return `at most ${max} token ids, got ${value.length}`;
  for (let i = 0; i < value.length; i++) {
    const t: unknown = value[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0x7fffffff) return `[${i}] = ${describeValue(t)} is not a token id (an integer >= 0)`;
  }
  return null;
}

/**
 * Checked in one pass with one issue for the first bad id: as
 * z.array(z.number().int()) it made an issue per bad element, and an 8 MiB
 * body of 2M of them held the pool's one thread (every stream) for 13 s.
 */
const promptIdsSchema = z.custom<number[]>((value) => tokenIdsProblem(value, MAX_PROMPT_IDS) === null, { error: (issue) => tokenIdsProblem(issue.input, MAX_PROMPT_IDS) ?? 'not a list of token ids' });

/**
 * Predicted tokens (`predictionIds`) a pool drafts from, and so the most a
 * request may send: up to 2026-12-07 a pool took 1,048,576 and drafted from
 * the first 8,192, after checking every one on its only thread (a 2 MB body
 * held every stream ~0.3 s, review h174).
 */
export const PREDICTION_TOKENS = 8192;

const predictionIdsSchema = z.custom<number[]>((value) => tokenIdsProblem(value, PREDICTION_TOKENS) === null, {
  error: (issue) => tokenIdsProblem(issue.input, PREDICTION_TOKENS) ?? 'not a list of token ids',
});

/** Most choices (vLLM's `structured_outputs.choice`) a generation may name, and most UTF-8 bytes in all of them: the pool's trie of them has a node per byte. vLLM sets no bound. */
export const MAX_OUTPUT_CHOICES = 1024;
export const MAX_OUTPUT_CHOICES_BYTES = 65_536;

const utf8 = new TextEncoder();

/** Why `value` is no list of 1 to MAX_OUTPUT_CHOICES non-empty strings of MAX_OUTPUT_CHOICES_BYTES UTF-8 bytes in all; null when it is one. Counted before zod reads the elements. */
export function outputChoicesProblem(value: unknown): string | null {
  if (!Array.isArray(value)) return 'expected an array of strings';
  if (value.length === 0) return 'name at least one choice';
  if (value.length > MAX_OUTPUT_CHOICES) return `at most ${MAX_OUTPUT_CHOICES} choices, got ${value.length}`;
  let total = 0;
  for (let i = 0; i < value.length; i++) {
    const choice: unknown = value[i];
    if (typeof choice !== 'string') return `[${i}] = ${describeValue(choice)} is not a string`;
    if (choice === '') return `[${i}] is empty (an output of no text is no choice served here)`;
    // Half a character has no UTF-8 bytes: no output could be it.
    if (/\p{Cs}/u.test(choice)) return `[${i}] holds a lone surrogate (half of a character)`;
    total += utf8.encode(choice).length;
    if (total > MAX_OUTPUT_CHOICES_BYTES) return `at most ${MAX_OUTPUT_CHOICES_BYTES} UTF-8 bytes in all`;
  }
  return null;
}

/** Most characters of a structured output's regex (vLLM's `structured_outputs.regex`, or the one a JSON schema becomes at the edge); the pool bounds its automaton's states too. */
export const MAX_OUTPUT_REGEX_CHARS = 262_144;
/** Most characters of a structured output's grammar (vLLM's `structured_outputs.grammar`); the pool bounds its automaton's states too. */
export const MAX_OUTPUT_GRAMMAR_CHARS = MAX_GRAMMAR_CHARS;

const outputChoicesSchema = z.custom<string[]>((value) => outputChoicesProblem(value) === null, { error: (issue) => outputChoicesProblem(issue.input) ?? 'not a list of choices' });

/** POST /v1/generate */
export const generateRequestSchema = z.object({
  /** Caller-chosen id, unique among the pool's running generations (a second one with an id in use is refused). */
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9._:-]+$/)
    // URL paths drop '.' and '..' segments: such a generation could never be cancelled or pushed a trie.
    .refine((id) => id !== '.' && id !== '..', 'an id may not be "." or ".."'),
  /** Prompt token ids, BOS included. */
  promptIds: promptIdsSchema,
  /** Tokens to generate; 0 = only read the prompt (with `promptLogprobs`: score it). */
  maxTokens: z.number().int().min(0),
  /** vLLM's `ignore_eos`: the model's end token does not end the generation (it runs to maxTokens or the context). Added within version 1: older pools ignore it. */
  ignoreEos: z.boolean().default(false),
  /** vLLM's `stop_token_ids`: more ids that end the generation as the end token does (emitted, as its last id); inside the vocabulary. Added within version 1. */
  stopTokenIds: z.array(z.number().int().min(0)).max(MAX_STOP_TOKEN_IDS).optional(),
  /** vLLM's `min_tokens`: the end token and the stop token ids cannot be generated before this many output tokens (their logits masked). Added within version 1. */
  minTokens: z.number().int().min(0).default(0),
  /**
   * The request's stop strings (OpenAI's `stop`), as the edge finds them in
   * the output's text (edge/stop-matcher.ts): the pool ends the generation
   * (`stop`) at the token whose text completes one, one ending in the text of
   * a token past `minTokens`, the earlier output of a resumed generation
   * included; never in the prompt. The edge still cuts the text at the stop
   * string; the pool only stops generating past it. Followed unless
   * `stopMatcher` names another version than the pool's STOP_MATCHER_VERSION
   * (then they are the sender's to find), and only the first
   * MAX_STOP_STRINGS of those followedStopString takes; the rest are the
   * edge's. Added within version 1: a pool from before it ignores it and
   * generates on until the edge's cancel.
   */
  stopStrings: z.array(z.string().max(65_536)).max(MAX_STOP_STRINGS_SENT).optional(),
  /** The STOP_MATCHER_VERSION the edge found `stopStrings` by; absent = the pool's own. Added within version 1. */
  stopMatcher: z.number().int().min(0).optional(),
  /** vLLM's `allowed_token_ids`: the only ids that may be generated (every other logit masked). Added within version 1. */
  allowedTokenIds: z.array(z.number().int().min(0)).min(1).max(MAX_ALLOWED_TOKEN_IDS).optional(),
  /** vLLM's `bad_words`, tokenized: a sequence's last id cannot be generated where the output ends in its other ids (that logit masked); inside the vocabulary. Added within version 1. */
  badWords: badWordsSchema.optional(),
  /** vLLM's `structured_outputs.choice`: the output's text must be one of these (a token that would leave every choice masked; the end ids only once it is one), as the edge prints it. Added within version 1: a pool from before it ignores it. */
  choices: outputChoicesSchema.optional(),
  /**
   * vLLM's other structured outputs: the output's text must match this
   * regular expression whole (`structured_outputs.regex`; `json`,
   * `json_object` and `response_format` as the edge writes them into one
   * (by default; SSSD_JSON_GRAMMAR=1 writes them as a grammar),
   * shared/structured/json-schema-regex.ts), in the subset
   * shared/structured/regex-syntax.ts reads; masked as `choices` are. Not
   * with `choices`. Added within version 1: a pool from before it ignores it.
   */
  regex: z.string().max(MAX_OUTPUT_REGEX_CHARS).optional(),
  /**
   * vLLM's `structured_outputs.grammar` (`guided_grammar`; and `json`,
   * `json_object`, `response_format` and tool calls as the edge writes them
   * with SSSD_JSON_GRAMMAR=1, shared/structured/json-schema-grammar.ts): the output's
   * text must be a sentence of this context-free grammar, in GBNF
   * (shared/structured/grammar-syntax.ts), start rule `root`; masked as
   * `regex` is. Not with `choices` or `regex`. Added within version 1: a
   * pool from before it ignores it (the `grammar` feature).
   */
  grammar: z.string().max(MAX_OUTPUT_GRAMMAR_CHARS).optional(),
  sampling: samplingSchema.default({ temperature: 0, topP: 1, minP: 0, topK: 0, frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1 }),
  speculation: z.enum(speculationMethods).default('sssd'),
  /** Use the pool's global datastore as a draft source (on unless turned off). */
  useDatastore: z.boolean().default(true),
  /** Let this generation's output feed the global datastore (off unless asked for). */
  contributeToDatastore: z.boolean().default(false),
  /** Edge-drafted candidate trie (shared/drafting wire encoding), base64. */
  trie: z.string().max(4 * 1024 * 1024).optional(),
  /**
   * Report log-probabilities: each emitted token's under the model's own
   * distribution at its position (temperature 1, no top-p/top-k cut, as
   * vLLM's default), and the `logprobs` most likely tokens' (0 = only the
   * emitted token's). Absent = none.
   */
  logprobs: z.number().min(0).max(MAX_TOP_LOGPROBS).int().optional(),
  /**
   * vLLM's `logprob_token_ids`: with `logprobs`, each emitted token's
   * `topLogprobs` are these ids' log-probabilities (the same distribution),
   * in this order, instead of the most likely tokens'. Inside the
   * vocabulary. Added within version 1: a pool from before it ignores it.
   */
  logprobIds: z.array(z.number().int().min(0)).min(1).max(MAX_LOGPROB_IDS).optional(),
  /**
   * Score the prompt: each prompt token after the first, its log-probability
   * given the ones before it, and the `promptLogprobs` most likely tokens'
   * there (a `prompt-logprobs` event after the prefill). Absent = none.
   */
  promptLogprobs: z.number().min(0).max(MAX_TOP_LOGPROBS).int().optional(),
  /**
   * The output expected, more or less (OpenAI's predicted outputs: the file
   * being edited, say), as token ids without BOS: drafted from as the prompt
   * is, by `sssd`, `context` and `pld`; the output is the same with or
   * without it. At most PREDICTION_TOKENS (8,192). Absent = none.
   */
  predictionIds: predictionIdsSchema.optional(),
  /**
   * The model the caller tokenized for, as a pool's /v1/info names it: a pool
   * serving another (a fleet mid-upgrade, a pool started with the wrong
   * checkpoint) answers 421 `model_mismatch` instead of generating from ids
   * meant for another vocabulary, and the caller tries another pool. Absent =
   * not checked. Added within protocol 1.
   */
  /**
   * The protocol version the caller speaks (PROTOCOL_VERSION): a pool of
   * another version answers 421 `protocol_mismatch` rather than misread the
   * request or be misread, and the caller tries another pool. Absent = not
   * checked. Added within protocol 1.
   */
  protocol: z.number().int().min(1).optional(),
  model: z
    .object({
      name: z.string().max(256),
      contextLength: z.number().int().positive(),
      /** The tokenizer file's SHA-256 (hex). */
      tokenizerSha256: z.string().max(64),
      /** The checkpoint's SHA-256 (hex), as /v1/info's model.sha256; absent = not checked (edges before it). */
      sha256: z.string().max(64).optional(),
    })
    .optional(),
  /**
   * Prefix caching scope: the pool reuses a cached prompt prefix only between
   * requests with the same salt (absent = the pool's shared scope), so one
   * tenant's cache hits cannot reveal another's prompts.
   */
  cacheSalt: z.string().min(1).max(256).optional(),
  /**
   * Who the generation is for, as the pool's admission sees it (the edge
   * sends a hash of the key's tenant): when generations wait for a batch
   * slot, the next slot goes to the tenant with the fewest running, then to
   * the one given a slot longest ago (gpu-pool/scheduler/fair-shares.ts);
   * while tenants share the pool, its last --tenant-reserve free slots go
   * only to a tenant with none running (tenant-reserve.ts), so one tenant's
   * flood does not hold back another's request (but the first after a minute
   * with no other tenant there: docs/protocol.md, "Admission"). Absent = one
   * shared tenant. Added within protocol 1.
   */
  tenant: z.string().min(1).max(256).optional(),
  /**
   * A generation resumed after its pool failed mid-stream: the last this-many
   * `promptIds` are output it had already produced, and count as output for
   * the frequency and presence penalties (less than the prompt's length;
   * absent = 0). The edge resumes with the same seed, and sampling noise is
   * tied to positions, so the continuation is the one the first pool would
   * have written.
   */
  resumedOutputTokens: z.number().int().min(0).optional(),
});
export type GenerateRequest = z.infer<typeof generateRequestSchema>;

/**
 * Most nodes, root included, of a trie pushed to a running generation (the
 * edge drafts at most this many, SSSD_EDGE_TRIE_NODES): every push is read
 * on the pool's only thread, and a drafter takes a few dozen nodes a step.
 * Pushed tries of 65,535 nodes, back to back, cost ~8 ms of that thread
 * each (review h174).
 */
export const MAX_PUSHED_TRIE_NODES = 4096;
/** The base64 length of the largest pushed trie: MAX_PUSHED_TRIE_NODES nodes with 32-bit tokens (docs/protocol.md, "Wire format"). */
export const MAX_PUSHED_TRIE_CHARS = 4 * Math.ceil((16 + MAX_PUSHED_TRIE_NODES * (4 + 2 + 1)) / 3);

/** POST /v1/generations/:id/trie — a fresh trie for a running generation. */
export const pushTrieSchema = z.object({
  /** Number of generated tokens the edge had seen when it drafted this trie;
   *  the trie's root continues prompt + output[0 .. outputLength). */
  outputLength: z.number().int().min(0),
  trie: z.string().max(MAX_PUSHED_TRIE_CHARS, {
    error: `at most ${MAX_PUSHED_TRIE_CHARS} base64 characters (a trie of ${MAX_PUSHED_TRIE_NODES} nodes with 32-bit tokens); a pushed trie holds at most ${MAX_PUSHED_TRIE_NODES} nodes`,
  }),
});
export type PushTrieRequest = z.infer<typeof pushTrieSchema>;

export const finishReasons = ['stop', 'length', 'context_length', 'cancelled', 'error'] as const;
export type FinishReason = (typeof finishReasons)[number];

/** Where an emitted token's draft came from (for the demo's colouring). */
export const tokenSources = ['model', 'edge', 'context', 'datastore'] as const;
export type TokenSource = (typeof tokenSources)[number];

export interface SpeculationUsage {
  /** Verification steps that carried a draft (vLLM "drafts"). */
  drafts: number;
  draftTokens: number;
  acceptedTokens: number;
  /** Forward passes this generation took part in (prefill included). */
  steps: number;
  /** Tokens emitted per decode step, bonus token included. */
  meanAcceptanceLength: number;
}

export type PoolEvent =
  | {
      type: 'start';
      id: string;
      queuedMs: number;
      /** Prompt tokens taken from the prefix cache (also in `done`'s usage; here for a stream cut short before it). */
      cachedPromptTokens?: number;
    }
  | {
      type: 'tokens';
      /** Accepted tokens of one step, in order. */
      ids: number[];
      /** Source of each id (same length as ids). */
      sources: TokenSource[];
      drafted: number;
      accepted: number;
      /** With `logprobs` asked: each id's log-probability (same length as ids). */
      logprobs?: number[];
      /** With `logprobs` > 0: per id, the most likely tokens as [id, log-probability], most likely first; with `logprobIds`, those ids', in their order. */
      topLogprobs?: Array<Array<[number, number]>>;
    }
  | {
      type: 'prompt-logprobs';
      /** For promptIds[1..]: each one's log-probability given the tokens before it. */
      logprobs: number[];
      /** With `promptLogprobs` > 0: per token, the most likely tokens there as [id, log-probability]. */
      topLogprobs?: Array<Array<[number, number]>>;
      /**
       * Per token, its rank in the vocabulary there: how many tokens are at least as likely, itself included
       * (1 = the most likely; vLLM's). Added within version 1: absent from pools before it.
       */
      ranks?: number[];
    }
  | { type: 'trie-exhausted'; outputLength: number }
  /**
   * Sent every QUEUED_KEEPALIVE_MS while the generation waits for a batch
   * slot (before `start`, or after it while preempted: queuedMs counts from
   * the pause): proof of life for a reader that takes a silent pool for a
   * hung one. Added in protocol 1's lifetime; readers ignore it
   * otherwise, as they do any event type they do not know.
   */
  | { type: 'queued'; queuedMs: number }
  | {
      type: 'done';
      finishReason: FinishReason;
      usage: {
        promptTokens: number;
        completionTokens: number;
        /** Prompt tokens taken from the pool's prefix cache instead of prefilled (absent from pools before it). */
        cachedPromptTokens?: number;
        speculation: SpeculationUsage;
      };
    }
  /** `maxTotalTokens`: on `too_large`, the most tokens (prompt and output) this pool holds, as a number to compare, not prose. */
  | { type: 'error'; code: PoolErrorCode; message: string; retryAfterMs?: number; maxTotalTokens?: number };

/** How often a queued generation's stream says it is still queued (a `queued` event). */
export const QUEUED_KEEPALIVE_MS = 1_000;

export type PoolErrorCode = 'bad_request' | 'too_large' | 'busy' | 'unauthorized' | 'not_found' | 'internal' | 'cancelled' | 'model_mismatch' | 'protocol_mismatch';

/** GET /v1/info */
export interface PoolInfo {
  protocol: number;
  model: {
    name: string;
    contextLength: number;
    vocabSize: number;
    bosId: number;
    eosIds: number[];
    /** How chat messages become a prompt (see docs/chat-template.md). */
    chatTemplate: 'concat';
    /** The checkpoint's SHA-256 (hex): a retrained model under the same file name is another model. Optional: added within protocol 1. */
    sha256?: string;
    /** When the checkpoint was written (Unix seconds), an OpenAI model's `created`. Optional: added within protocol 1. */
    created?: number;
  };
  tokenizer: {
    format: 'llama2c' | 'hf-json';
    /** Relative URL on the pool that serves the tokenizer file. */
    path: string;
    sha256: string;
  };
  datastore: { enabled: boolean; tokens: number };
  /**
   * prefillChunk: most prompt tokens a generation feeds a step (0 = whole prompts; absent from older pools).
   * tenantReserve: rows only a tenant with none running may take while tenants share the pool (--tenant-reserve; absent from older pools).
   * preempt: whether such a tenant, every row taken, may take one from the tenant holding the most (--preempt; absent from older pools: no).
   */
  limits: { maxActive: number; maxQueued: number; maxTotalTokens: number; prefillChunk?: number; tenantReserve?: number; preempt?: boolean };
  /** Where the forward pass runs: onnxruntime's execution provider (`cpu`, `cuda`, `webgpu`). Optional: added within protocol 1. */
  runtime?: { executionProvider: string };
  /** The pool's speculation settings (`sssd pool --speculative-config`). Optional: added within protocol 1. */
  speculation?: PoolSpeculationInfo;
  /** The generate request's fields added within protocol 1 that this pool honours (shared/pool-features.ts); absent from pools before the list, which honour none of them. */
  features?: string[];
  /** The STOP_MATCHER_VERSION by which this pool finds `stopStrings` (a request naming another `stopMatcher` has them left to its sender). Absent from pools before 2026-12-07. */
  stopMatcher?: number;
}

/** What a generation's ids are meant for (the generate request's `model`), as a pool's /v1/info names it. */
export type ModelIdentity = NonNullable<GenerateRequest['model']>;

export function modelIdentity(info: PoolInfo): ModelIdentity {
  const identity = { name: info.model.name, contextLength: info.model.contextLength, tokenizerSha256: info.tokenizer.sha256 };
  // The weights too, where the pool names them: a retrained checkpoint under the same file name is another model.
  return info.model.sha256 ? { ...identity, sha256: info.model.sha256 } : identity;
}

/** A model's identity as messages write it: `context N, tokenizer <12 hex>, weights <12 hex>` (the weights where named). */
export function modelIdentityDetails(identity: ModelIdentity): string {
  const weights = identity.sha256 ? `, weights ${identity.sha256.slice(0, 12)}` : '';
  return `context ${identity.contextLength}, tokenizer ${identity.tokenizerSha256.slice(0, 12)}${weights}`;
}

/** The same model: name, context, tokenizer, and the weights where both sides name them (older pools and edges do not). */
export function sameModelIdentity(x: ModelIdentity, y: ModelIdentity): boolean {
  const sameWeights = x.sha256 === undefined || y.sha256 === undefined || x.sha256 === y.sha256;
  return x.name === y.name && x.contextLength === y.contextLength && x.tokenizerSha256 === y.tokenizerSha256 && sameWeights;
}

export interface PoolSpeculationInfo {
  /** Tree budget policy; 'off' drafts nothing whatever a request asks. */
  budget: 'marginal' | 'static' | 'off';
  /** Whether measured throughput may switch speculation off by batch size. */
  governor: boolean;
  /** Most draft nodes per request per step. */
  maxTreeNodes: number;
  /** The cap by running batch size: from `fromBatchSize` generations up, at most `maxTreeNodes` draft nodes (0 = none). */
  maxTreeNodesByBatchSize: { fromBatchSize: number; maxTreeNodes: number }[];
  /** The drafter's fusion weights (shared/drafting/fusion.ts). */
  fusion: FusionWeights;
}

/** GET /healthz */
export interface PoolHealth {
  ok: boolean;
  active: number;
  queued: number;
  /** 0..1, the edge routes to the least loaded healthy pool. */
  load: number;
  tokensPerSecond: number;
  /** True while the pool finishes its running generations before it stops (it refuses new ones; /healthz answers 503). */
  draining: boolean;
  /**
   * True while a forward pass has run past the pool's --stuck-seconds: its
   * device may hang; `ok` is false and /healthz answers 503, so edges route
   * elsewhere (absent from pools before it).
   */
  stuck?: boolean;
  /**
   * True after several steps in a row whose forward pass failed for the
   * whole batch (every generation in it ended with an error), until a pass
   * goes through or a while passes: `ok` is false and /healthz answers 503
   * (absent from pools before it).
   */
  failing?: boolean;
  /**
   * Tokens reserved (prompt + max tokens, capped at the context length + 1) by running
   * and queued generations, and the pool's limit on them (--max-total-tokens):
   * admission refuses a request that would pass it (absent from pools before it).
   */
  reservedTokens?: number;
  maxTotalTokens?: number;
  /** As /v1/info's `features`, here for the edge's pick of a pool for each request (absent from pools before the list). */
  features?: string[];
  /** --max-active: what one more generation adds to `load` (1 / maxActive), for an edge's count of those it sent since (absent from pools before it). */
  maxActive?: number;
}
