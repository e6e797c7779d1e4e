/**
 * POST /v1/completions and /v1/chat/completions after auth and parsing:
 * prompt → ids, limits against the model's context, the user's cache (one KV
 * read, waited for a bounded time), the edge trie, then a CompletionRun
 * answered as SSE or JSON.
 */
import { choiceSeed, drawnSeed } from '../shared/sampling/request-seed';
import { ApiError, badRequest, TooManyChoicesError } from './api-error';
import { sha256Hex, type KeyRecord } from './api-keys';
import { encodeChatPrompt } from './chat-template';
import { CompletionRun, draftUserTrie, type CompletionDeps } from './completion-run';
import { LogprobsFormatter, type EndpointKind, type ResponseMeta } from './openai-format';
import { type ChatMessage, type ChatRequest, type CompletionRequest } from './request-schema';
import { promptLogprobsAsked } from './prompt-logprobs';
import { PREDICTION_TOKENS } from '../shared/protocol';
import { promptTokensKept, truncatedPrompt } from './prompt-truncation';
import { fittedConversation } from './conversation-truncation';
import { moreTokensThan } from './context-bound';
import { MAX_TOKENIZE_CHARACTERS } from './tokenize-route';
import { encodeContinuation } from '../shared/tokenizer/encode-continuation';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import { acceptsModelName, unknownModel, type ServedModel } from './served-model';
import { settledWithin } from './settled-within';
import { WHOLE_REPLY_HEARTBEAT_MS } from './edge-config';
import { streamResponse, type KeepCompletion } from './chat-stream';
import { wholeCompletion, wholeCompletionResponse } from './whole-response';
import { cacheScope, type UserCacheStore } from './user-cache-store';
import { badWordsTokenIds } from './bad-words';
import { anyTailFor, jsonFormFor, structuredOutput } from './structured-output';
import { allowedIdsLeft } from '../shared/allowed-ids-left';
import { generationEndIds } from '../shared/end-ids';
import { edgeTrieDepth } from '../shared/drafting/edge-trie';
import { tenantHashText, type RequestLog } from './request-log';
import { reproductionHeaders, type Reproduction } from './reproduction';

export type ParsedRequest =
  | { kind: 'completion'; body: CompletionRequest }
  /** `truncation` "auto": the oldest turns dropped to fit the context (the Responses API's; edge/conversation-truncation.ts). */
  | { kind: 'chat'; body: ChatRequest; truncation?: 'auto' };

export interface HandlerContext extends Omit<CompletionDeps, 'model'> {
  key: KeyRecord;
  model: ServedModel;
  /** Null where the Worker has no SSSD_KV binding: the request drafts without the user's cache. */
  store: UserCacheStore | null;
  /** Headers every response carries (CORS is added by the router). */
  headers: HeadersInit;
  /** The client request's abort signal. */
  clientSignal?: AbortSignal;
  /** The request's id hex (request-id.ts): the completion's id is `cmpl-<hex>` / `chatcmpl-<hex>`. */
  requestHex: string;
  /** How long the request waits for the user's cache before it opens without it (SSSD_USER_CACHE_WAIT_MS). */
  userCacheWaitMs: number;
  /** A non-streamed reply not done this long starts, a space following as often (SSSD_WHOLE_REPLY_HEARTBEAT_MS; 0 = whole). */
  wholeReplyHeartbeatMs?: number;
  /** A stream silent this long mid-reply gets an SSE comment (SSSD_STREAM_QUIET_COMMENT_MS). */
  streamQuietCommentMs?: number;
  /** A stream whose sent text waits this long with none of it taken takes its client for gone (SSSD_STREAM_STALLED_CLIENT_MS). */
  streamStalledClientMs?: number;
  /** How the reply is answered; absent, in the endpoint's own shape (answerOpenAi). */
  answer?: Answerer;
  /** JSON as a grammar of any depth where the pools follow one (SSSD_JSON_GRAMMAR); else the depth-3 regex. */
  jsonGrammar?: boolean;
  /** The request's log line (request-log.ts), where it is written (SSSD_REQUEST_LOG): told the completion's figures, and when its generations end. */
  log?: RequestLog;
  /** Told the work the reply goes on doing past its Response (PreparedReply.goesOn). */
  goesOn?: (work: Promise<unknown>) => void;
}

/** Hashes the edge sends the pool (tenants, prefix-cache salts), each computed once per isolate (bounded: a full map starts over). */
const hashedNames = new Map<string, string>();

async function hashedOnce(text: string): Promise<string> {
  let hash = hashedNames.get(text);
  if (hash === undefined) {
    hash = await sha256Hex(text);
    // Two per tenant (its admission tenant and its prefix-cache salt), more with request salts.
    if (hashedNames.size >= 4096) hashedNames.clear();
    hashedNames.set(text, hash);
  }
  return hash;
}

/**
 * The pool shares cached prompt prefixes within a tenant, as OpenAI shares
 * them within an organisation; a request's own `cache_salt` (vLLM's) narrows
 * that to the requests that give the same one.
 */
function prefixCacheSalt(tenant: string, requestSalt: string | null): Promise<string> {
  return hashedOnce(`prefix-cache:${JSON.stringify([tenant, requestSalt])}`);
}

/** The key's tenant as the pool's admission knows it (its fair share of batch slots): hashed, so pools never hold tenant names. */
export function poolTenant(tenant: string): Promise<string> {
  return hashedOnce(tenantHashText(tenant));
}

/** UTF-16 length of the prompt's text (the messages' contents for chat; 0 for token ids): no more UTF-8 bytes than that. */
function promptTextLength(parsed: ParsedRequest): number {
  if (parsed.kind === 'chat') return chatTextLength(parsed.body.messages);
  const prompt = parsed.body.prompt;
  return typeof prompt === 'string' ? prompt.length : typeof prompt[0] === 'string' ? prompt[0].length : 0;
}

function chatTextLength(messages: readonly ChatMessage[]): number {
  let length = 0;
  for (const message of messages) {
    const content = message.content;
    if (typeof content === 'string') length += content.length;
    else if (content) for (const part of content) length += part.type === 'text' ? part.text.length : part.refusal.length;
    else length += message.refusal?.length ?? 0;
  }
  return length;
}

/**
 * Refuses a text prompt too long for the context before tokenizing it: a
 * token stands for at most `maxTokenBytes` bytes, so a text of more than
 * contextLength × that (with slack) cannot fit. Encoding a 1 MiB prompt took
 * ~0.45 s of the isolate's one thread, which every other request on it waited
 * through, only to be refused.
 */
function refuseFarTooLong(parsed: ParsedRequest, model: ServedModel): void {
  const length = promptTextLength(parsed);
  const contextLength = model.info.model.contextLength;
  if (!moreTokensThan(length, contextLength, model)) return;
  throw badRequest(
    `This model's maximum context length is ${contextLength} tokens; the prompt (${length} characters) has far more.`,
    parsed.kind === 'chat' ? 'messages' : 'prompt',
    'context_length_exceeded',
  );
}

/**
 * A prompt that `truncate_prompt_tokens` cuts is tokenized whole (its last tokens depend on all of it), on the
 * isolate's one thread that every request on it waits through: bounded as /tokenize is (a 1 MiB prompt cut to 10
 * tokens held every other tenant's requests ~1.3 s; review h97).
 */
export function refuseTooLongToCut(parsed: ParsedRequest): void {
  const length = promptTextLength(parsed);
  if (length <= MAX_TOKENIZE_CHARACTERS) return;
  const param = parsed.kind === 'chat' ? 'messages' : 'prompt';
  throw badRequest(
    `${param}: ${length} characters; with truncate_prompt_tokens at most ${MAX_TOKENIZE_CHARACTERS} are tokenized to be cut (as /tokenize takes): send the end of the text.`,
    param,
    'context_length_exceeded',
  );
}

/**
 * A chat's prompt ids with its oldest turns dropped until it and `replyRoom`
 * tokens fit the context (the Responses API's `truncation: "auto"`). Where
 * what cannot be dropped is too long still, a 400 that says so (a reply
 * asking the whole context: its ids, refused after as without truncation).
 */
function fittedChatIds(messages: readonly ChatMessage[], replyRoom: number, model: ServedModel): number[] {
  const budget = model.info.model.contextLength - replyRoom;
  const encoded = (candidate: readonly ChatMessage[]): number[] => encodeChatPrompt(candidate, model.info.model.chatTemplate, model.tokenizer);
  const { messages: kept, fitted } = fittedConversation(messages, (candidate) => {
    // A conversation far too long is known by its length, before paying for its encoding.
    if (budget < 1 || moreTokensThan(chatTextLength(candidate), budget, model)) return null;
    const ids = encoded(candidate);
    return ids.length <= budget ? ids : null;
  });
  if (fitted !== null) return fitted;
  // A reply that takes the whole context leaves no room for any prompt: said so, naming the reply's bound (the prompt
  // with every turn dropped was named, a few tokens of a long conversation, as if it were the fault; review h119).
  if (budget < 1) {
    throw badRequest(
      `This model's maximum context length is ${model.info.model.contextLength} tokens, and ${replyRoom} are asked for the reply, which leaves no room for a prompt (truncation "auto" drops the oldest turns to fit the rest, not the reply); ask for fewer output tokens.`,
      // The Responses API's max_output_tokens, as its translation names it (truncation is the Responses API's alone).
      'max_completion_tokens',
      'context_length_exceeded',
    );
  }
  refuseFarTooLong({ kind: 'chat', body: { model: '', messages: kept } }, model);
  const ids = encoded(kept);
  throw badRequest(
    `This model's maximum context length is ${model.info.model.contextLength} tokens; with truncation "auto", what is never dropped (the instructions, system and developer messages, and the last input item) is ${ids.length} tokens, and ${replyRoom} more ${replyRoom === 1 ? 'is' : 'are'} needed for the reply: send a shorter last item or instructions${replyRoom > 1 ? ', or a smaller max_output_tokens' : ''}.`,
    'messages',
    'context_length_exceeded',
  );
}

function promptIds(parsed: ParsedRequest, model: ServedModel): number[] {
  const tokenizer = model.tokenizer;
  // As /tokenize counts a chat (tokenize-route.ts).
  if (parsed.kind === 'chat') return encodeChatPrompt(parsed.body.messages, model.info.model.chatTemplate, tokenizer);
  // A completion's text prompt is the caller's to give structure to: its special spellings are special ids (docs/edge.md).
  const prompt = parsed.body.prompt;
  if (typeof prompt === 'string') return tokenizer.encode(prompt, { bos: true });
  if (typeof prompt[0] === 'string') return tokenizer.encode(prompt[0], { bos: true });
  const ids = Array.isArray(prompt[0]) ? prompt[0] : (prompt as number[]);
  for (const id of ids) {
    if (id >= tokenizer.vocabSize) throw badRequest(`prompt: token id ${id} is outside the vocabulary (size ${tokenizer.vocabSize}).`, 'prompt', 'invalid_value');
  }
  return ids.slice();
}

/** A completion's text prompt keeps its BOS when cut (HF's truncation keeps the special tokens it adds); token ids and a chat's templated prompt do not. */
function keepsBos(parsed: ParsedRequest): boolean {
  return parsed.kind === 'completion' && (typeof parsed.body.prompt === 'string' || typeof parsed.body.prompt[0] === 'string');
}

/** The request's predicted output as token ids (no BOS, as the reply's would be), cut to what the pool uses; null for none. */
function predictionIds(parsed: ParsedRequest, model: ServedModel): number[] | null {
  const prediction = parsed.body.prediction;
  if (!prediction) return null;
  const whole = typeof prediction.content === 'string' ? prediction.content : prediction.content.map((part) => part.text).join('');
  // Empty, but given: usage still says 0 accepted, 0 rejected (the pool is sent none).
  if (whole.length === 0) return [];
  // Cut before encoding, to what a reply could follow (no more than the context) at 16 characters a token, rarely
  // exceeded: a 1 MiB prediction took ~0.3-0.45 s of edge CPU to encode whole, and 128K characters of CJK ~60 ms.
  const usable = Math.min(PREDICTION_TOKENS, model.info.model.contextLength);
  const text = whole.length > usable * 16 ? whole.slice(0, usable * 16) : whole;
  const ids = encodeContinuation(model.tokenizer, text);
  return ids.length > usable ? ids.slice(0, usable) : ids;
}

/**
 * The prompt sent back: decoded when it was token ids; as given when it was
 * text, unless its tokens are listed (logprobs) and
 * do not decode to it (characters the tokenizer lacks, `<unk>`): then as the
 * model saw it, so the tokens join to the text and `text_offset` indexes it
 * (evaluation harnesses slice the text by them).
 */
export function echoText(parsed: ParsedRequest, ids: readonly number[], tokenizer: Tokenizer, listsTokens: boolean): string {
  const prompt = parsed.kind === 'completion' ? parsed.body.prompt : null;
  const given = typeof prompt === 'string' ? prompt : Array.isArray(prompt) && typeof prompt[0] === 'string' ? (prompt[0] as string) : null;
  if (given !== null && !listsTokens) return given;
  return tokenizer.decode(ids);
}

/**
 * The most tokens asked for, by either name (`max_completion_tokens` is the
 * newer one, on both endpoints), and the field errors about it name. Two
 * different values are refused: taking either one silently would bill or cut
 * a reply the client did not mean.
 */
function requestedTokens(body: ParsedRequest['body']): { requested: number | null; param: 'max_tokens' | 'max_completion_tokens' } {
  const legacy = body.max_tokens ?? null;
  const current = body.max_completion_tokens ?? null;
  if (legacy !== null && current !== null && legacy !== current) {
    throw badRequest(`max_tokens (${legacy}) and max_completion_tokens (${current}) differ: send one of them.`, 'max_completion_tokens', 'invalid_value');
  }
  return current !== null ? { requested: current, param: 'max_completion_tokens' } : { requested: legacy, param: 'max_tokens' };
}

/** `max_tokens` of a completion that sends neither it nor `max_completion_tokens` (OpenAI's and vLLM's default). */
export const DEFAULT_COMPLETION_TOKENS = 16;

/** How many alternatives per token the request wants log-probabilities for (0 = the token's own only); null = none. */
function logprobsAsked(parsed: ParsedRequest): number | null {
  if (parsed.kind === 'chat') return parsed.body.logprobs === true ? (parsed.body.top_logprobs ?? 0) : null;
  return parsed.body.logprobs ?? null;
}

export async function handleCompletion(parsed: ParsedRequest, ctx: HandlerContext): Promise<Response> {
  const body = parsed.body;
  const model = ctx.model;
  if (!acceptsModelName(model, body.model)) {
    throw unknownModel(model, body.model);
  }
  const contextLength = model.info.model.contextLength;
  const { requested, param: limitParam } = requestedTokens(body);
  // Neither sent: a completion takes 16, as OpenAI's legacy API and vLLM's CompletionRequest do (a vLLM client's reply
  // ran to the context here); chat, the rest of the context, as both do. The 16 count in truncation as if sent (vLLM's
  // build_tok_params: -1 keeps the context less those 16).
  const byDefault = parsed.kind === 'completion' ? DEFAULT_COMPLETION_TOKENS : null;
  const kept = promptTokensKept(body.truncate_prompt_tokens, contextLength, requested ?? byDefault, limitParam);
  // A prompt to be cut may be as long as the body allows: tokenized whole, as vLLM does, since its last tokens depend on all of it.
  let ids: number[];
  if (parsed.kind === 'chat' && parsed.truncation === 'auto') {
    // The reply's room: what it asks for, else one token (OpenAI drops only what it must).
    ids = fittedChatIds(parsed.body.messages, requested ?? 1, model);
  } else {
    if (kept === null) refuseFarTooLong(parsed, model);
    else refuseTooLongToCut(parsed);
    ids = truncatedPrompt(promptIds(parsed, model), kept, keepsBos(parsed), body.truncation_side ?? 'left');
  }
  // A prompt that fills the context can still be scored (echo, max_tokens 0); generating needs one position more.
  if (ids.length === contextLength && requested !== 0) {
    throw badRequest(
      `This model's maximum context length is ${contextLength} tokens, and the prompt fills it: no token can be generated${parsed.kind === 'completion' ? ' (max_tokens 0 with echo scores the prompt)' : ''}.`,
      requested === null ? (parsed.kind === 'chat' ? 'messages' : 'prompt') : limitParam,
      'context_length_exceeded',
    );
  }
  if (ids.length > contextLength) {
    throw badRequest(
      `This model's maximum context length is ${contextLength} tokens; the prompt has ${ids.length}.`,
      parsed.kind === 'chat' ? 'messages' : 'prompt',
      'context_length_exceeded',
    );
  }
  const room = contextLength - ids.length;
  if (requested !== null && requested > room) {
    throw badRequest(
      `This model's maximum context length is ${contextLength} tokens; the prompt has ${ids.length} and ${requested} more were requested.`,
      limitParam,
      'context_length_exceeded',
    );
  }
  const echo = parsed.kind === 'completion' && parsed.body.echo === true;
  if (requested === 0 && !echo) throw badRequest(`${limitParam} must be at least 1 (0 only with echo: score the prompt).`, limitParam, 'invalid_value');
  // The default within the room the prompt leaves: not refused for a number the client never sent.
  const maxTokens = requested ?? (byDefault === null ? room : Math.min(byDefault, room));
  const inVocabulary = (param: string, ids: readonly number[]): void => {
    for (const id of ids) {
      if (id >= model.tokenizer.vocabSize) throw badRequest(`${param}: token id ${id} is outside the vocabulary (size ${model.tokenizer.vocabSize}).`, param, 'invalid_value');
    }
  };
  inVocabulary('logit_bias', Object.keys(body.logit_bias ?? {}).map(Number));
  const stopTokenIds = body.stop_token_ids ?? [];
  inVocabulary('stop_token_ids', stopTokenIds);
  const allowedTokenIds = body.allowed_token_ids ?? null;
  inVocabulary('allowed_token_ids', allowedTokenIds ?? []);
  const logprobIds = body.logprob_token_ids ?? null;
  inVocabulary('logprob_token_ids', logprobIds ?? []);
  // vLLM's rule and words: the ids are scored at generated positions, and an echo alone has none (its prompt is scored by logprobs' count).
  if (logprobIds !== null && requested === 0) {
    throw badRequest(`\`logprob_token_ids\` is not supported when \`echo=True\` and \`${limitParam}=0\` because no output tokens are generated.`, 'logprob_token_ids', 'invalid_value');
  }
  const badWords = badWordsTokenIds(body.bad_words ?? [], model.tokenizer);
  // JSON (a schema, JSON mode, tool calls) as a grammar, nested to any depth, where the operator asks and the pools follow one.
  // Tools (under "auto", their default): text left unconstrained past its first character where the pools read (?any-tail).
  const tools = 'tools' in body && Array.isArray(body.tools) && body.tools.length > 0;
  const structured = structuredOutput(body, ctx.jsonGrammar === true ? await jsonFormFor(ctx.picker, ctx.waitUntil) : 'regex', tools && (await anyTailFor(ctx.picker, ctx.waitUntil)));
  const minTokens = body.min_tokens ?? 0;
  // vLLM's rule: a reply cannot be held open past the tokens it may have.
  if (minTokens > maxTokens) throw badRequest(`min_tokens (${minTokens}) must be at most ${limitParam} (${maxTokens}).`, 'min_tokens', 'invalid_value');
  // A reply with nothing it may start with can only fail: said here, in the request's own words (the pool would refuse it too).
  if (allowedTokenIds !== null && maxTokens > 0) {
    const heldBack = minTokens > 0 ? generationEndIds(model.eosIds, body.ignore_eos === true, stopTokenIds) : null;
    if (!allowedIdsLeft(allowedTokenIds, badWords, heldBack)) {
      const why = heldBack ? 'one of bad_words, or ends the reply (the end token, stop_token_ids) before min_tokens' : 'one of bad_words';
      throw badRequest(`allowed_token_ids leaves no token to generate: every one is ${why}.`, 'allowed_token_ids', 'invalid_value');
    }
  }
  const choices = body.n ?? 1;
  const { maxActive, maxQueued, maxTotalTokens } = model.info.limits;
  // Each choice is a generation: with one pool that holds fewer (places, or tokens: each reserves its prompt and
  // max_tokens), its own choices fill it and the last is refused busy, a 503 that clients retry for ever.
  if (ctx.picker.size === 1 && choices > 1) {
    if (choices > maxActive + maxQueued) {
      throw new TooManyChoicesError(`n: ${choices} choices are ${choices} generations at once, and this server's pool holds at most ${maxActive + maxQueued} (running and queued); ask for fewer.`);
    }
    const reserved = ids.length + maxTokens;
    if (choices * reserved > maxTotalTokens) {
      throw new TooManyChoicesError(`n: ${choices} choices of ${reserved} tokens each (prompt and ${limitParam}) need ${choices * reserved}, and this server's pool holds at most ${maxTotalTokens} at once; ask for fewer choices or tokens.`);
    }
  }
  const stops = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const speculate = body.speculation !== 'off';
  const temperature = body.temperature ?? 1;

  // The user's cache only makes drafts better: the request waits for it a
  // bounded time (a read KV must fetch from afar takes tens to hundreds of
  // ms), then opens without it, and its trie follows when it comes.
  // The cache is there to draft from: a request that does not draft at the
  // edge (speculation off, SSSD_EDGE_TRIE_NODES=0, or a reply of one token,
  // which leaves nothing to draft: edgeTrieDepth) neither reads it nor
  // leaves its text in it.
  const trieDepth = edgeTrieDepth(maxTokens, 0);
  const drafts = speculate && ctx.edgeTrieNodes > 0 && ctx.store !== null && trieDepth > 0;
  const userCache = drafts && ctx.store !== null ? ctx.store.load(await cacheScope(ctx.key.dataScope, body.user), ctx.key.dataScope) : null;
  const cacheSalt = await prefixCacheSalt(ctx.key.tenant, body.cache_salt ?? null);
  const tenant = await poolTenant(ctx.key.tenant);
  const cacheInTime = userCache ? await settledWithin(userCache, ctx.userCacheWaitMs) : null;
  const trie = cacheInTime ? draftUserTrie(cacheInTime.cache, ids, ctx.edgeTrieNodes, temperature, trieDepth) : null;
  const kind: EndpointKind = parsed.kind;
  const asked = logprobsAsked(parsed);
  const promptScores = promptLogprobsAsked(body, model.tokenizer.vocabSize);
  const meta: ResponseMeta = {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${ctx.requestHex}`,
    created: Math.floor(Date.now() / 1000),
    model: model.info.model.name,
    fingerprint: model.fingerprint,
    kind,
    sources: body.stream_options?.sources === true,
    includeUsage: body.stream === true && body.stream_options?.include_usage === true,
    ...(asked !== null ? { logprobs: new LogprobsFormatter(kind, model.tokenizer, asked > 0 || logprobIds !== null, body.return_tokens_as_token_ids === true, logprobIds !== null) } : {}),
    ...(promptScores !== null ? { promptLogprobs: true } : {}),
    ...(body.return_token_ids === true ? { tokenIds: true } : {}),
    ...(structured.toolCalls !== null ? { toolCalls: structured.toolCalls } : {}),
  };
  // One generation per choice. A seed gives each choice one of its own (choiceSeed: the choices differ, and repeat run
  // to run). A sampled request without one gets one drawn here rather than at the pool: a generation resumed on
  // another pool (CompletionRun.resume) then goes on as it would have on the first, and the client is told it.
  const seed = body.seed ?? (temperature > 0 ? drawnSeed() : null);
  const reproduction: Reproduction = { fingerprint: model.fingerprint, seed: seed === null ? null : choiceSeed(seed, 0) };
  const echoed = echo ? echoText(parsed, ids, model.tokenizer, asked !== null) : null;
  // Tokenized with speculation off too: usage reports how much of it the reply followed.
  const predicted = predictionIds(parsed, model);
  let unfinished = choices;
  const deps = {
    ...ctx,
    onFinish: () => {
      if (--unfinished > 0) return;
      ctx.log?.generationsEnded(runs.map((run) => run.outcome));
      ctx.onFinish();
    },
  };
  // Said here, with nothing that can throw between it and the runs: the line then waits for their end.
  ctx.log?.completion(meta.model, choices, body.stream === true, ids.length, tenant);
  const runs = Array.from(
    { length: choices },
    (_, i) =>
      new CompletionRun(
        {
          id: choices === 1 ? meta.id : `${meta.id}-${i}`,
          promptIds: ids,
          maxTokens,
          sampling: {
            temperature,
            // top_p 0 keeps the most likely token alone (the pool takes top-p in (0, 1]): top-k 1 is that.
            topP: body.top_p === 0 ? 1 : (body.top_p ?? 1),
            topK: body.top_p === 0 ? 1 : body.top_k !== undefined && body.top_k !== null && body.top_k > 0 ? body.top_k : 0,
            minP: body.min_p ?? 0,
            ...(seed !== null ? { seed: choiceSeed(seed, i) } : {}),
            frequencyPenalty: body.frequency_penalty ?? 0,
            presencePenalty: body.presence_penalty ?? 0,
            repetitionPenalty: body.repetition_penalty ?? 1,
            ...(body.logit_bias && Object.keys(body.logit_bias).length > 0 ? { logitBias: body.logit_bias } : {}),
          },
          speculate,
          stops,
          ignoreEos: body.ignore_eos === true,
          stopTokenIds,
          minTokens,
          includeStop: body.include_stop_str_in_output === true,
          allowedTokenIds,
          badWords,
          choices: structured.choices,
          regex: structured.regex,
          grammar: structured.grammar,
          constraintParam: structured.param,
          userCache,
          trie,
          trieFollows: drafts && cacheInTime === null,
          logprobs: asked,
          logprobIds,
          // The user's cache learns from one choice: n writes of one KV key would race; and from none where the
          // client said `store: false` (review h112: its text stayed in KV for 30 days, readable by the key's holder).
          saveToCache: i === 0 && body.store !== false,
          echo: echoed,
          // Every choice has the same prompt: the pool scores it once, and the response shows choice 0's.
          promptLogprobs: i === 0 ? promptScores : null,
          cacheSalt,
          tenant,
          // n choices of one prompt would add it n times.
          // Not where the client said store: false (its text would join what every tenant drafts from, review h117).
          contributeToDatastore: ctx.key.contributeToDatastore && i === 0 && body.store !== false,
          predictionIds: predicted,
        },
        deps,
      ),
  );
  // Client gone (where the runtime signals it): stop the generations at the pool.
  // It may have gone already, while the body was read: an abort event is not replayed.
  const cancelRuns = (): void => {
    for (const run of runs) run.cancel();
  };
  if (ctx.clientSignal?.aborted) cancelRuns();
  else ctx.clientSignal?.addEventListener('abort', cancelRuns, { once: true });
  const opening = openAll(runs);
  const heartbeatMs = ctx.wholeReplyHeartbeatMs ?? WHOLE_REPLY_HEARTBEAT_MS;
  const detachFromClient = (): void => ctx.clientSignal?.removeEventListener('abort', cancelRuns);
  const headers = { ...Object.fromEntries(new Headers(ctx.headers)), ...reproductionHeaders(reproduction) };
  return (ctx.answer ?? answerOpenAi)({ body, runs, meta, reproduction, opening, heartbeatMs, headers, clientSignal: ctx.clientSignal, detachFromClient, streamQuietCommentMs: ctx.streamQuietCommentMs, log: ctx.log, streamStalledClientMs: ctx.streamStalledClientMs, waitUntil: ctx.waitUntil, goesOn: ctx.goesOn });
}

/** A request's generations, opening, to be answered in its API's shape. */
export interface PreparedReply {
  body: ParsedRequest['body'];
  runs: readonly CompletionRun[];
  meta: ResponseMeta;
  /** Its fingerprint and seed, as `headers` carry them (a stored response keeps them for its reads). */
  reproduction: Reproduction;
  /** Every generation being opened (the first error of any). */
  opening: Promise<void>;
  /** A non-streamed reply not done this long starts, a space following as often; a stream queued this long starts with comments. */
  heartbeatMs: number;
  headers: HeadersInit;
  clientSignal?: AbortSignal;
  /**
   * From now on the client's leaving no longer cancels the runs: a background
   * response once its queued answer is out, whose run outlives its client
   * (until then, a client that leaves stops it, and nothing is stored).
   */
  detachFromClient: () => void;
  streamQuietCommentMs?: number;
  /** The request's log line, where it is written: a background response's waits for its stored end (background-response.ts). */
  log?: RequestLog;
  streamStalledClientMs?: number;
  /** The request's waitUntil: a stream's task is held by it past its client's leaving (StreamSetting.waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /**
   * Told each work the reply goes on doing past its Response, where what it stores is written (a stream's task, a
   * whole reply's once its headers went out, a background run and its kept events): the request is over, and its
   * storage settled, once all of it has ended (request-work.ts).
   */
  goesOn?: (work: Promise<unknown>) => void;
}

/** Makes the HTTP response of a prepared reply: completions' and chat's (answerOpenAi), or the Responses API's. */
export type Answerer = (reply: PreparedReply) => Promise<Response>;

/**
 * Completions' and chat completions' answer: one JSON body, or SSE chunks.
 * `keep` (chat's `store: true`) is given the whole chat.completion before the
 * reply's last byte, where every choice ran to its end (not where it failed,
 * or its client left and the runs were cancelled).
 */
export async function answerOpenAi({ body, runs, meta, opening, heartbeatMs, headers, clientSignal, streamQuietCommentMs, streamStalledClientMs, waitUntil, goesOn, log }: PreparedReply, keep: KeepCompletion | null = null): Promise<Response> {
  if (!body.stream) {
    const reply = { runs, meta, headers, heartbeatMs, opening, clientSignal, goesOn, waitUntil, log, streamStalledClientMs };
    if (!keep) return wholeCompletionResponse(reply);
    return wholeCompletionResponse(reply, async () => {
      const whole = await wholeCompletion(runs, meta);
      if (!runs.some((run) => run.outcome.cancelled)) await keep(whole);
      return whole;
    });
  }
  const options = {
    includeUsage: body.stream_options?.include_usage === true,
    // As vLLM's should_include_usage: continuous stats only where the final usage is asked too.
    continuousUsage: body.stream_options?.include_usage === true && body.stream_options.continuous_usage_stats === true,
    smooth: body.stream_options?.smooth === true,
  };
  return streamResponse(runs, meta, options, { headers, clientSignal, opening, heartbeatMs, quietCommentMs: streamQuietCommentMs, stalledClientMs: streamStalledClientMs, waitUntil, goesOn, requestLog: log }, keep);
}

/**
 * Opens every choice's generation; the first choice that cannot start fails
 * the request at once (its error, not a sibling's "cancelled"), and the
 * others are stopped: waiting for a sibling queued at a pool would hold the
 * answer, and the client's slot, for as long as that queue.
 */
async function openAll(runs: readonly CompletionRun[]): Promise<void> {
  try {
    await Promise.all(runs.map((run) => run.open()));
  } catch (err) {
    for (const run of runs) run.cancel('request-failed');
    throw err;
  }
}
