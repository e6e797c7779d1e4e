/**
 * OpenAI response objects for completions and chat completions, streamed
 * (chunks) or whole. Asked for (`stream_options.sources`), each streamed
 * chunk's choice carries a non-standard `sssd_sources` field: the chunk's text
 * split into segments with the draft source of their tokens. Only when asked:
 * the SDKs' stream helpers copy unknown choice fields into the final object,
 * where the last chunk's segments would pass for the whole reply's.
 */
import type { CompletionUsage } from './completion-run';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import type { SourcedText, TokenLogprob } from './token-text';
import type { PromptLogprobs } from './prompt-logprobs';
import { toolCallsOf, toolFinishReason, type ToolCall, type ToolCallMode } from './tool-calls';
import { jsonText, withKeyOrder } from './ordered-json';

export type EndpointKind = 'completion' | 'chat';

export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
  /** `system_fingerprint` (system-fingerprint.ts): in every chunk and whole response, as OpenAI's and vLLM's. */
  fingerprint: string;
  kind: EndpointKind;
  /** Streamed text chunks carry `sssd_sources` (stream_options.sources). */
  sources?: boolean;
  /** stream_options.include_usage: the last chunk carries the usage, and every other one `usage: null` (as OpenAI's). */
  includeUsage?: boolean;
  /** Present when the request asked for log-probabilities: the formatter of choice 0 (streams make one per choice with `newLogprobs`). */
  logprobs?: LogprobsFormatter;
  /** The request asked for vLLM's `prompt_logprobs` (a whole response carries them). */
  promptLogprobs?: boolean;
  /** vLLM's `return_token_ids`: the response carries `prompt_token_ids` and each choice's `token_ids`. */
  tokenIds?: boolean;
  /** Chat's tool calls (edge/tool-calls.ts): each choice's text is a call's arguments, or a JSON array of calls. */
  toolCalls?: ToolCallMode;
}

/**
 * A streamed chunk's ids (vLLM's return_token_ids): the choice's output ids
 * since its previous chunk, and in its first chunk the prompt's.
 */
export interface ChunkTokenIds {
  output: readonly number[];
  prompt?: readonly number[];
}

/** A choice's fields for `ids`, where vLLM places them: completions' choices carry the prompt's too, chat's their own alone. */
function choiceTokenIds(meta: ResponseMeta, ids: ChunkTokenIds | undefined): object {
  if (!ids) return {};
  return meta.kind === 'completion' && ids.prompt ? { prompt_token_ids: ids.prompt, token_ids: ids.output } : { token_ids: ids.output };
}

/** What the formatter needs of the tokenizer. */
export type TokenBytes = Pick<Tokenizer, 'tokenBytes'>;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
/** Each id's display string, per tokenizer, made when first asked for. */
const displays = new WeakMap<TokenBytes, Map<number, string>>();

/** OpenAI's spelling of a token by its bytes: `bytes:\\xe4\\xb8`. */
function bytesSpelling(bytes: Uint8Array): string {
  return 'bytes:' + Array.from(bytes, (b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
}

/**
 * An id's text, or, where its bytes are not text on their own (a byte of a
 * character split over ids), OpenAI's `bytes:\xe4` spelling: distinct ids
 * keep distinct names in `top_logprobs`.
 */
export function tokenDisplay(tokenizer: TokenBytes, id: number): string {
  let byId = displays.get(tokenizer);
  if (!byId) displays.set(tokenizer, (byId = new Map()));
  let display = byId.get(id);
  if (display === undefined) {
    const bytes = tokenizer.tokenBytes(id);
    try {
      display = strictUtf8.decode(bytes);
    } catch {
      display = bytesSpelling(bytes);
    }
    byId.set(id, display);
  }
  return display;
}

/** What names an id listed by itself: its bytes, or its special name. */
export type TokenNames = Pick<Tokenizer, 'tokenBytes' | 'specialName'>;

/**
 * An id listed by itself, as vLLM lists it in `/tokenize`'s `token_strs` and
 * `prompt_logprobs`' `decoded_token`, and as log-probabilities name their
 * alternatives: a special id by its name (`<s>`, `</s>`), else
 * tokenDisplay's. Not for a log-probability's own `token`, whose texts join
 * to the reply's, in which a special id prints nothing.
 */
export function tokenString(tokenizer: TokenNames, id: number): string {
  return tokenizer.specialName(id) ?? tokenDisplay(tokenizer, id);
}

/** vLLM's `token_id:<id>` names (return_tokens_as_token_ids), each made when first asked for: the vocabulary bounds them. */
const idNames = new Map<number, string>();

export function tokenIdName(id: number): string {
  let name = idNames.get(id);
  if (name === undefined) idNames.set(id, (name = `token_id:${id}`));
  return name;
}

/**
 * Tokens' log-probabilities in the endpoint's shape: chat's `{content: [{token,
 * logprob, bytes, top_logprobs}]}`, or legacy completions' `{tokens,
 * token_logprobs, top_logprobs, text_offset}` (offsets run on across the
 * chunks of a response, so one formatter serves one response). Legacy
 * `tokens` are the texts each token added to the response (they join to its
 * text, and `text_offset` indexes it); chat tokens are named by tokenDisplay
 * (a special id '', as it prints), with chat's `bytes` the token's own bytes.
 * Among the alternatives the chosen token has its own entry's name (legacy:
 * its `tokens` entry), and the others tokenString's: a special id by its
 * name (`</s>`), so the end token's chance is told from BOS's.
 */
export class LogprobsFormatter {
  private offset = 0;

  constructor(
    private readonly kind: EndpointKind,
    private readonly tokenizer: TokenNames,
    /** Alternatives were asked for (legacy completions: `top_logprobs` is null otherwise). */
    private readonly withTop: boolean,
    /**
     * vLLM's return_tokens_as_token_ids: tokens and alternatives are named
     * `token_id:<id>`, distinct and JSON-safe whatever their bytes. Legacy
     * `text_offset` still indexes the text (vLLM's counts the names' lengths);
     * chat's `bytes` are still the token's own.
     */
    private readonly byId = false,
    /**
     * vLLM's logprob_token_ids: each token's alternatives are the listed ids'
     * (the pool's topLogprobs then hold them, in their order), shown as vLLM
     * shows them: the chosen token first, then each listed id once, all of
     * them whatever top_logprobs or logprobs counts.
     */
    private readonly listedIds = false,
  ) {}

  /**
   * The chosen token's key is `text`, its `tokens` entry, so that
   * `top_logprobs[i][tokens[i]]` finds it, as clients that compare the two
   * (is this token the greedy one?) expect: at a byte of a split character
   * that is '' (the whole character at the byte that completes it), not its
   * `bytes:\xe6` name. Where that text is its name less the leading space
   * (the first token after BOS: the decoder drops that space), the others
   * are named the same way.
   */
  private topEntries(top: ReadonlyArray<[number, number]>, t: TokenLogprob, text: string): Record<string, number> {
    const display = tokenDisplay(this.tokenizer, t.id);
    // A bare ' ' piece there prints nothing at all (babyllama105's second token, always): dropped as well.
    const spaceDropped = display.length === text.length + 1 && display.charCodeAt(0) === 32 && display.endsWith(text);
    return topEntriesOf(this.tokenizer, top, t.id, text, spaceDropped);
  }

  /** A fresh formatter of the same kind (another choice's text offsets start at 0). */
  another(): LogprobsFormatter {
    return new LogprobsFormatter(this.kind, this.tokenizer, this.withTop, this.byId, this.listedIds);
  }

  format(tokens: readonly TokenLogprob[]): object {
    const name = this.byId ? tokenIdName : (id: number): string => tokenDisplay(this.tokenizer, id);
    const alternatives = this.listedIds ? chosenThenListed : withChosen;
    if (this.kind === 'chat') {
      const entry = (token: string, id: number, logprob: number) => ({ token, logprob, bytes: Array.from(this.tokenizer.tokenBytes(id)) });
      const alternative = this.byId ? tokenIdName : (id: number): string => tokenString(this.tokenizer, id);
      const top = (t: TokenLogprob): ReadonlyArray<[number, number]> => (this.listedIds && t.top ? chosenThenListed(t.top, t) : (t.top ?? []));
      return {
        content: tokens.map((t) => {
          const own = name(t.id);
          return { ...entry(own, t.id, t.logprob ?? 0), top_logprobs: top(t).map(([id, lp]) => entry(id === t.id ? own : alternative(id), id, lp)) };
        }),
        refusal: null,
      };
    }
    const texts = tokens.map((t) => t.text ?? tokenDisplay(this.tokenizer, t.id));
    const textOffset = texts.map((text) => {
      const at = this.offset;
      this.offset += codePoints(text);
      return at;
    });
    return {
      tokens: this.byId ? tokens.map((t) => tokenIdName(t.id)) : texts,
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: this.withTop ? tokens.map((t, i) => (t.top === null ? null : this.byId ? topEntriesById(alternatives(t.top, t)) : this.topEntries(alternatives(t.top, t), t, texts[i]))) : null,
      text_offset: textOffset,
    };
  }
}

/**
 * Characters as OpenAI's legacy API and vLLM count them for `text_offset`
 * (Python's len: code points), not UTF-16 units: a client that slices the
 * text by offset in Python was one off per emoji before.
 */
function codePoints(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/**
 * Legacy completions' alternatives hold the chosen token too, as OpenAI's and
 * vLLM's do (up to logprobs + 1 entries): a sampled token outside the top N
 * is looked up there by clients.
 */
function withChosen(top: ReadonlyArray<[number, number]>, t: TokenLogprob): ReadonlyArray<[number, number]> {
  if (t.logprob === null || top.some(([id]) => id === t.id)) return top;
  return [...top, [t.id, t.logprob]];
}

/**
 * Alternatives at a token whose listed ids (logprob_token_ids) were scored,
 * in vLLM's order (its sampler gathers the sampled token, then the ids): the
 * chosen token first, then each listed id once, in the list's order.
 */
function chosenThenListed(listed: ReadonlyArray<[number, number]>, t: TokenLogprob): ReadonlyArray<[number, number]> {
  const out: Array<[number, number]> = t.logprob === null ? [] : [[t.id, t.logprob]];
  for (const entry of listed) if (!out.some(([id]) => id === entry[0])) out.push(entry);
  return out;
}

/** An object for token names as keys: without a prototype, a piece spelled `__proto__` is an entry like any other, not a prototype assignment that drops it. */
function entries(): Record<string, number> {
  return Object.create(null) as Record<string, number>;
}

/**
 * Alternatives as legacy completions' {name: logprob}, in their order (most
 * likely first; written so by responseJson, though a name may be integer-like):
 * the chosen id under `chosenName`, which no other takes; another by its
 * name (a special id's, `</s>`; else its text, less a leading space where
 * `spaceDropped`, see topEntries), or where that is taken (a text piece and
 * the byte piece of the same byte) by its bytes (`bytes:\x2c`), else its id
 * (`token_id:3`).
 */
function topEntriesOf(tokenizer: TokenNames, top: ReadonlyArray<[number, number]>, chosen: number, chosenName: string, spaceDropped: boolean): Record<string, number> {
  const out = entries();
  const order: string[] = [];
  const free = (key: string): boolean => key !== chosenName && !Object.hasOwn(out, key);
  for (const [id, lp] of top) {
    let key = chosenName;
    if (id !== chosen) {
      const special = tokenizer.specialName(id);
      if (special !== null) key = special;
      else {
        const display = tokenDisplay(tokenizer, id);
        key = spaceDropped && display.charCodeAt(0) === 32 ? display.slice(1) : display;
        // By its bytes next (a special id has none: its id then).
        if (!free(key)) key = bytesSpelling(tokenizer.tokenBytes(id));
      }
      if (!free(key)) key = tokenIdName(id);
    }
    out[key] = lp;
    order.push(key);
  }
  return withKeyOrder(out, order);
}

/** Alternatives as legacy completions' {`token_id:<id>`: logprob}, in their order: one name per id, so none clash. */
function topEntriesById(top: ReadonlyArray<[number, number]>): Record<string, number> {
  const out = entries();
  const order: string[] = [];
  for (const [id, lp] of top) {
    const key = tokenIdName(id);
    out[key] = lp;
    order.push(key);
  }
  return withKeyOrder(out, order);
}

/** The tokens carried by these segments, in order. */
export function tokensOf(segments: readonly SourcedText[]): TokenLogprob[] {
  const out: TokenLogprob[] = [];
  for (const s of segments) if (s.tokens) for (const t of s.tokens) out.push(t);
  return out;
}

export function joinText(segments: readonly SourcedText[]): string {
  let text = '';
  for (const s of segments) text += s.text;
  return text;
}

/** vLLM's continuous usage: the prompt's tokens, and the choice's completion tokens so far. */
export type RunningUsage = Pick<CompletionUsage, 'prompt_tokens' | 'completion_tokens' | 'total_tokens'>;

/**
 * A streamed chunk: the endpoint's chunk object around `choices`, and `usage`:
 * the whole request's in the last chunk, or one choice's so far (vLLM's continuous_usage_stats).
 */
function chunk(meta: ResponseMeta, choices: object[], usage?: RunningUsage, promptTokenIds?: readonly number[]): object {
  const object = meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  return {
    id: meta.id,
    object,
    created: meta.created,
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices,
    ...(usage ? { usage } : meta.includeUsage ? { usage: null } : {}),
    ...(promptTokenIds ? { prompt_token_ids: promptTokenIds } : {}),
  };
}

/**
 * Chat's first chunk of choice `index`; `promptTokenIds` (return_token_ids) go beside its choices, as vLLM's. Its
 * content is null before a call, as OpenAI's (the AI SDK opens an empty text part for a `""`): where one is forced,
 * or where "auto"'s reply turned out to start one (chat-stream.ts sends it then).
 */
export function roleChunk(meta: ResponseMeta, index = 0, usage?: RunningUsage, promptTokenIds?: readonly number[], content: '' | null = meta.toolCalls !== undefined ? null : ''): object {
  return chunk(meta, [{ index, delta: { role: 'assistant', content }, logprobs: null, finish_reason: null }], usage, promptTokenIds);
}

/** A chunk of choice `index`'s text; `logprobs` formats its tokens (one formatter per choice), when asked; `ids`, where return_token_ids asked for them. */
export function textChunk(meta: ResponseMeta, segments: readonly SourcedText[], index = 0, logprobs: LogprobsFormatter | undefined = meta.logprobs, usage?: RunningUsage, ids?: ChunkTokenIds): object {
  const text = joinText(segments);
  const content = meta.kind === 'chat' ? { delta: { content: text } } : { text };
  const choice = { index, ...content, logprobs: logprobs ? logprobs.format(tokensOf(segments)) : null, finish_reason: null, ...choiceTokenIds(meta, ids) };
  return chunk(meta, [meta.sources ? { ...choice, sssd_sources: segments.map((s) => ({ text: s.text, source: s.source })) } : choice], usage);
}

/** A choice's last chunk; `stopReason` is vLLM's `stop_reason` (the stop string or stop token id it ended at, else null); `ids`, as textChunk's. */
export function finishChunk(meta: ResponseMeta, finishReason: string, index = 0, stopReason: string | number | null = null, usage?: RunningUsage, ids?: ChunkTokenIds): object {
  const content = meta.kind === 'chat' ? { delta: {} } : { text: '' };
  return chunk(meta, [{ index, ...content, logprobs: null, finish_reason: finishReason, stop_reason: stopReason, ...choiceTokenIds(meta, ids) }], usage);
}

export function usageChunk(meta: ResponseMeta, usage: CompletionUsage): object {
  return chunk(meta, [], usage);
}

/** One finished choice of a whole response; `logprobs` formats its tokens, when asked. */
export interface WholeChoice {
  text: string;
  finishReason: string;
  /** vLLM's `stop_reason`: the stop string the choice ended at, else null. */
  stopReason: string | number | null;
  tokens: readonly TokenLogprob[];
  logprobs?: LogprobsFormatter;
  /** The choice's output ids (those usage counts), sent where meta.tokenIds. */
  tokenIds?: readonly number[];
}

/**
 * `promptLogprobs`: the prompt's scores, where asked (meta.promptLogprobs);
 * `promptTokenIds`: the prompt's ids, where meta.tokenIds. Both in each
 * choice for completions, at the top for chat, as vLLM places them.
 */
export function wholeResponse(meta: ResponseMeta, choices: readonly WholeChoice[], usage: CompletionUsage, promptLogprobs: PromptLogprobs | null = null, promptTokenIds: readonly number[] | null = null): object {
  const chat = meta.kind === 'chat';
  const scored = meta.promptLogprobs === true ? { prompt_logprobs: promptLogprobs } : {};
  const prompted = meta.tokenIds === true ? { prompt_token_ids: promptTokenIds } : {};
  return {
    id: meta.id,
    object: chat ? 'chat.completion' : 'text_completion',
    created: meta.created,
    model: meta.model,
    choices: choices.map((c, index) => {
      const calls = chat && meta.toolCalls ? toolCallsOf(meta.toolCalls, c.text) : null;
      return {
        index,
        ...(chat ? { message: assistantMessage(c.text, calls) } : { text: c.text }),
        logprobs: c.logprobs ? c.logprobs.format(c.tokens) : null,
        finish_reason: meta.toolCalls ? toolFinishReason(meta.toolCalls, c.finishReason, calls) : c.finishReason,
        stop_reason: c.stopReason,
        ...(chat ? {} : { ...scored, ...prompted }),
        ...(meta.tokenIds === true ? { token_ids: c.tokenIds ?? [] } : {}),
      };
    }),
    usage,
    system_fingerprint: meta.fingerprint,
    ...(chat ? { ...scored, ...prompted } : {}),
  };
}

/**
 * A chunk's or whole response's JSON text. Legacy completions' `top_logprobs`
 * objects and `prompt_logprobs` keep their order (ordered-json.ts: a token
 * named "2" would otherwise come first); anything else goes through
 * JSON.stringify, which is faster.
 */
export function responseJson(meta: ResponseMeta, body: object): string {
  return (meta.kind === 'completion' && meta.logprobs !== undefined) || meta.promptLogprobs === true ? jsonText(body) : JSON.stringify(body);
}

/** A whole chat reply's message: its text, or, where it was made tool calls, the calls (content null, as OpenAI's). */
/** A whole reply's assistant message: its text, or (content null) its calls. */
export function assistantMessage(text: string, calls: readonly ToolCall[] | null): object {
  if (calls === null) return { role: 'assistant', content: text, refusal: null };
  return { role: 'assistant', content: null, refusal: null, tool_calls: calls };
}

/**
 * A streamed chunk of tool calls for choice `index`: `calls`, each with its
 * list `index`, and in the first delta of a call its id, type and name
 * (OpenAI's stream of a call: those once, then its arguments piece by piece).
 */
export function toolCallChunk(meta: ResponseMeta, calls: ReadonlyArray<{ index: number; id?: string; name?: string; arguments: string }>, index = 0, logprobs: object | null = null, usage?: RunningUsage, ids?: ChunkTokenIds): object {
  const deltas = calls.map((c) => (c.id !== undefined ? { index: c.index, id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } } : { index: c.index, function: { arguments: c.arguments } }));
  return chunk(meta, [{ index, delta: { tool_calls: deltas }, logprobs, finish_reason: null, ...choiceTokenIds(meta, ids) }], usage);
}
