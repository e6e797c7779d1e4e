/**
 * One completion from the edge's side: open it on a pool (with failover), turn
 * the pool's token bursts into released text segments (decoder + stop strings),
 * resume it on another pool from where it was when its pool fails mid-stream,
 * answer 'trie-exhausted' with a fresh edge trie (fire-and-forget), push the
 * first trie when the user's cache came after the generation opened, cancel at
 * the pool on stop or client disconnect, and finally merge prompt + output into
 * the user's cache with one bounded write (waitUntil).
 */
import { followedStopString, STOP_MATCHER_VERSION, modelIdentity, PROTOCOL_VERSION, type PoolEvent, type SamplingParams, type SpeculationUsage } from '../shared/protocol';
import { draftEdgeTrie, edgeTrieDepth } from '../shared/drafting/edge-trie';
import type { UserCache } from '../shared/drafting/user-cache';
import { ApiError } from './api-error';
import { bytesToBase64 } from './base64';
import { openGeneration, UnhonouredFeaturesError, type OpenedGeneration, type PoolTries } from './open-generation';
import { matchPrediction } from './prediction-match';
import type { GenerateInput, PoolClient } from './pool-client';
import type { PoolPicker } from './pool-picker';
import { loggedErrorCode, type CancelCause, type GenerationOutcome } from './request-log';
import type { ServedModel } from './served-model';
import { TokenTextAssembler, type SourcedText, type TokenLogprob } from './token-text';
import { promptLogprobsOf, type PromptLogprobs } from './prompt-logprobs';
import type { LoadedUserCache, UserCacheStore } from './user-cache-store';
import { generationEndIds } from '../shared/end-ids';
import { EDGE_TRIE_PUSHES } from './edge-config';

export interface CompletionPlan {
  id: string;
  promptIds: number[];
  maxTokens: number;
  /** The protocol's own type: a field added to the pool's schema is asked for here too. */
  sampling: SamplingParams;
  speculate: boolean;
  stops: string[];
  /** vLLM's ignore_eos, stop_token_ids, min_tokens and include_stop_str_in_output (the pool holds the ids back; the edge, stop strings). */
  ignoreEos: boolean;
  stopTokenIds: number[];
  minTokens: number;
  includeStop: boolean;
  /** vLLM's allowed_token_ids: the only ids the pool may generate (null = any). */
  allowedTokenIds: number[] | null;
  /** vLLM's bad_words as token-id sequences (edge/bad-words.ts; empty = none). */
  badWords: number[][];
  /** vLLM's structured_outputs.choice (or guided_choice): the reply's text is one of these (null = any). */
  choices: string[] | null;
  /** vLLM's other structured outputs (regex, json, json_object; response_format), as one regex the reply's text matches whole (edge/structured-output.ts; null = any). */
  regex?: string | null;
  /** vLLM's structured_outputs.grammar (or guided_grammar): a GBNF grammar the reply's text is a sentence of (null = any). */
  grammar?: string | null;
  /** The request's field the choices, regex or grammar came from: what a pool's refusal of them names (null = none). */
  constraintParam?: string | null;
  /**
   * The user's cache, read from KV as the request came in (it may come after
   * the generation opened); null where the request does not draft at the
   * edge (speculation off, or the edge's tries off): then nothing of it is
   * read or written.
   */
  userCache: Promise<LoadedUserCache> | null;
  /** The edge trie drafted for the prompt, shipped with it (null: speculation off, an empty cache, or one not in yet). */
  trie: Uint8Array | null;
  /** The cache was not in when the generation opened: once it comes, its trie is pushed to the running generation. */
  trieFollows: boolean;
  /** Log-probabilities asked: of each token and of this many most likely ones (null = none). */
  logprobs: number | null;
  /** vLLM's logprob_token_ids: with logprobs, each token's alternatives are these ids' instead (null = the most likely ones). */
  logprobIds?: number[] | null;
  /** Merge prompt + output into the user's cache at the end (one choice of n does). */
  saveToCache: boolean;
  /** Completions' `echo`: the prompt's text, sent before the completion (with `logprobs`: its tokens scored). */
  echo: string | null;
  /** vLLM's `prompt_logprobs`: the prompt scored, each token with this many most likely ones (null = none; one choice of n asks). */
  promptLogprobs?: number | null;
  /** The pool's prefix-caching scope (the key's tenant, hashed): prompts share cached prefixes only within it. */
  cacheSalt: string;
  /** Who the generation is for at the pool's admission (the key's tenant, hashed): its turn for a free row, and the rows kept for a tenant with none running (docs/protocol.md, "Admission"). */
  tenant: string;
  /** Let the pool add prompt + output to its global datastore (the key opted in; one choice of n does). */
  contributeToDatastore: boolean;
  /** The request's predicted output (`prediction`), tokenized: the pool drafts from it when speculating, and usage says how much the reply followed; null = none. */
  predictionIds?: number[] | null;
}

/**
 * Times a generation moves to another pool after its pool failed mid-stream
 * (the stream cut, an error, the pool cancelling it as it shut down, or
 * silent past the stall window).
 */
export const MAX_RESUMES = 2;

export interface CompletionDeps {
  picker: PoolPicker;
  model: ServedModel;
  /** Null where the Worker has no SSSD_KV binding (then no request has a user cache to save). */
  store: UserCacheStore | null;
  waitUntil: (promise: Promise<unknown>) => void;
  edgeTrieNodes: number;
  /** Fresh tries one generation pushes at most (SSSD_EDGE_TRIE_PUSHES, edge-config.ts); unset: EDGE_TRIE_PUSHES. */
  edgeTriePushes?: number;
  /** A pool silent this long on the generation has hung: fail over, or resume (SSSD_POOL_STALL_SECONDS). */
  poolStallMs: number;
  /** Called once when the run is over (releases the caller's concurrency slot). */
  onFinish: () => void;
}

/** OpenAI usage plus the per-request speculation figures (vLLM puts them on the final usage chunk). */
export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** OpenAI's: prompt tokens the pool took from its prefix cache instead of prefilling them. */
  prompt_tokens_details: { cached_tokens: number };
  /** OpenAI's, for a request with a `prediction`: its tokens the completion followed, and the rest (edge/prediction-match.ts). */
  completion_tokens_details?: { accepted_prediction_tokens: number; rejected_prediction_tokens: number };
  speculation: {
    method: 'sssd' | 'off';
    drafts: number;
    draft_tokens: number;
    accepted_tokens: number;
    steps: number;
    mean_acceptance_length: number;
    /** Emitted tokens whose draft came from the user's cache (the edge trie). */
    edge_accepted_tokens: number;
    /** Size in bytes of the first edge trie shipped: with the request, or pushed once the user's cache came (0 = none). */
    edge_trie_bytes: number;
  };
}

/** The runs' usages as one: the prompt once, every choice's completion and speculation figures added up. */
export function combinedUsage(usages: readonly CompletionUsage[]): CompletionUsage {
  if (usages.length === 1) return usages[0];
  const first = usages[0];
  const sum = (f: (u: CompletionUsage) => number): number => usages.reduce((s, u) => s + f(u), 0);
  const completion = sum((u) => u.completion_tokens);
  const steps = sum((u) => u.speculation.steps);
  return {
    prompt_tokens: first.prompt_tokens,
    completion_tokens: completion,
    total_tokens: first.prompt_tokens + completion,
    // The prompt counts once, so its cached part does too: the most any choice found.
    prompt_tokens_details: { cached_tokens: Math.max(...usages.map((u) => u.prompt_tokens_details.cached_tokens)) },
    ...(first.completion_tokens_details
      ? {
          completion_tokens_details: {
            accepted_prediction_tokens: sum((u) => u.completion_tokens_details?.accepted_prediction_tokens ?? 0),
            rejected_prediction_tokens: sum((u) => u.completion_tokens_details?.rejected_prediction_tokens ?? 0),
          },
        }
      : {}),
    speculation: {
      method: first.speculation.method,
      drafts: sum((u) => u.speculation.drafts),
      draft_tokens: sum((u) => u.speculation.draft_tokens),
      accepted_tokens: sum((u) => u.speculation.accepted_tokens),
      steps,
      mean_acceptance_length: steps > 0 ? completion / steps : 0,
      edge_accepted_tokens: sum((u) => u.speculation.edge_accepted_tokens),
      edge_trie_bytes: first.speculation.edge_trie_bytes,
    },
  };
}

export interface CompletionSummary {
  finishReason: 'stop' | 'length';
  /** vLLM's stop_reason: the stop string or stop token id the reply ended at; null at the model's end token or a length. */
  stopReason: string | number | null;
  usage: CompletionUsage;
  /** vLLM's `prompt_logprobs`, where the plan asked for them (null otherwise). */
  promptLogprobs: PromptLogprobs | null;
}

/**
 * A pool's refusal of the request's choices, regex or grammar (its message
 * starts with which: "regex: no text that matches it can be written with
 * this model's tokenizer ...") names the field the request sent them in: a
 * JSON schema, tools or response_format reach the pool as a regex, and
 * `param` null left a client to guess which of its fields it was.
 */
export function namedRefusal(err: unknown, constraintParam: string | null | undefined): unknown {
  if (!(err instanceof ApiError) || err.code !== 'pool_rejected' || err.param !== null || !constraintParam) return err;
  if (!/^The inference pool rejected the request: (?:choices|regex|grammar): /.test(err.message)) return err;
  return new ApiError(400, err.message, err.type, err.code, constraintParam);
}

export class CompletionRun {
  private readonly controller = new AbortController();
  private opened: OpenedGeneration | null = null;
  private markAccepted: () => void = () => {};
  /** Resolves once a pool has taken the generation in (it may still be queued there); never, if none does. */
  readonly accepted: Promise<void> = new Promise<void>((resolve) => (this.markAccepted = resolve));
  /**
   * The client's reply started before this generation opened (its 200 with
   * spaces, or SSE comments, while a pool held it queued): set by the
   * response. From then on a failure before the first token is tried again
   * within the stall window, since a refusal could only be an error inside
   * that 200; before it, the client gets a clean 503 it can retry.
   */
  replyStarted = false;
  /**
   * Set by a streamed response: writes to the client and says, a moment
   * later, whether it is still there. Asked before a resume, since a silent
   * pool is silence to the client too, and one that left meanwhile was
   * noticed only at the next write, after the generation had been opened
   * again and run to its end with no one reading.
   */
  clientStillThere: (() => Promise<boolean>) | null = null;
  private client: PoolClient | null = null;
  private cancelled = false;
  /** Who stopped it: the client leaving (or its request's own end), or a background response's cancel, delete or deadline. */
  private cancelledBy: CancelCause = 'client';
  /** Its pool failed mid-reply and it is waiting for one to go on with it (resume). */
  private resuming = false;
  /** Fresh tries pushed (CompletionDeps.edgeTriePushes). */
  private triePushes = 0;

  /** Its pool failed, and no other has taken it up yet: a stop now is the pools' outage, not the run's own length. */
  get waitingForPool(): boolean {
    return this.resuming && !this.finished;
  }
  private finished = false;
  /** Output ids (all received; `counted` of them are the completion). */
  private readonly outputIds: number[] = [];
  private counted = 0;

  /** The prompt's tokens, as usage counts them. */
  get promptTokens(): number {
    return this.plan.promptIds.length;
  }

  /** The completion's tokens so far (received and not cut by a stop string), as usage counts them. */
  get completionTokens(): number {
    return this.counted;
  }

  /** The prompt's ids as the model reads them (truncated, where asked): vLLM's `prompt_token_ids`. */
  get promptIds(): readonly number[] {
    return this.plan.promptIds;
  }

  /** The completion's ids from `start` on, those usage counts (the end token included, none after a stop string's last): vLLM's `token_ids`. */
  completionIds(start = 0): number[] {
    return this.outputIds.slice(start, this.counted);
  }
  private drafts = 0;
  private draftTokens = 0;
  private acceptedTokens = 0;
  private steps = 0;
  private edgeAccepted = 0;
  /** The pool's id of the generation: the plan's, then `<id>.r<k>` after the k-th resume. */
  private generationId: string;
  /** Output ids the current pool's generation started after (those before came from a pool that failed). */
  private outputBase = 0;
  private resumes = 0;
  /** Pools asked to open the generation (its first opening and each resume's, taken or not), for the request's log line. */
  private readonly poolTries: PoolTries = { tries: 0 };
  /** How the generation ended, for the request's log line: its finish reason, or the code of the error it failed with. */
  private endedWith: 'stop' | 'length' | null = null;
  private failedWith: string | null = null;
  /** When the first token reached the edge (0: none yet). */
  private firstTokenAt = 0;
  /** When its pool last sent tokens (Date.now()): a cut-off says how long the reply had been silent, not the window (review h241). */
  private lastTokensAt = 0;
  /** The prompt's scores came (for the echo's log-probabilities and/or prompt_logprobs). */
  private promptScored = false;
  private promptLogprobs: PromptLogprobs | null = null;
  /** The stream's close after a stop string, once the pool has had the stop (null: closed in run()'s end). */
  private closing: Promise<unknown> | null = null;
  /** Prompt tokens the first pool took from its prefix cache (its `start` says; a resumed pool's prompt is not the user's). */
  private cachedTokens = 0;
  /** The user's cache once it has come (re-drafting on 'trie-exhausted' needs it). */
  private loaded: LoadedUserCache | null = null;
  private trieBytes: number;
  /** The stop strings the pool is sent: those it follows (followedStopString; the edge finds every one all the same, and its schema takes at most MAX_STOP_STRINGS). */
  private readonly poolStops: string[];

  constructor(
    private readonly plan: CompletionPlan,
    private readonly deps: CompletionDeps,
  ) {
    this.trieBytes = plan.trie?.length ?? 0;
    this.poolStops = plan.stops.filter(followedStopString);
    this.generationId = plan.id;
    void plan.userCache?.then((loaded) => {
      this.loaded = loaded;
    });
  }

  /**
   * Client went away: stop the generation at the pool, and count the run as
   * finished now. Its stream may never be read again (a response whose client
   * left before its headers is dropped unread), so run()'s own end cannot be
   * what frees the key's in-flight slot.
   */
  cancel(by: CancelCause = 'client'): void {
    // Over already (the client's signal can fire as it goes after the last byte): nothing to stop,
    // and a cancel now would race the stop the pool has been told of.
    if (this.cancelled || this.finished) return;
    this.cancelled = true;
    this.cancelledBy = by;
    this.controller.abort();
    this.finish();
    if (this.client) this.deps.waitUntil(this.client.cancel(this.generationId).catch(() => undefined));
  }

  /** How the run went, for the request's log line (request-log.ts). */
  get outcome(): GenerationOutcome {
    return {
      finishReason: this.endedWith,
      completionTokens: this.counted,
      poolsTried: this.poolTries.tries,
      resumes: this.resumes,
      cancelled: this.cancelled ? this.cancelledBy : null,
      cachedTokens: this.cachedTokens,
      pool: this.client === null ? null : this.deps.picker.indexOf(this.client.baseUrl),
      error: this.failedWith,
      firstTokenAt: this.firstTokenAt,
    };
  }

  /** Tells deps the run is over, once, whichever of cancel, a failed open or run()'s end comes first. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.deps.onFinish();
  }

  /**
   * Starts the generation on a pool (failover included). Awaited before the
   * response is sent, so "no pool" or a refused request gets its own HTTP status.
   */
  async open(): Promise<void> {
    const { plan, deps } = this;
    await this.openOn(this.generateRequest(plan.promptIds, plan.maxTokens, plan.trie, 0));
    // The cache came too late to ship a trie with the request: push one for where the stream is when it does.
    if (!this.cancelled && plan.trieFollows && plan.userCache) deps.waitUntil(plan.userCache.then(() => this.pushFreshTrie(this.outputIds.length - this.outputBase)));
  }

  /** The generate body for prompt ids (the plan's, or the plan's + the output so far when resuming). */
  private generateRequest(promptIds: number[], maxTokens: number, trie: Uint8Array | null, resumedOutputTokens: number): GenerateInput {
    const { plan, deps } = this;
    const scored = this.promptScored ? null : this.promptScoresAsked();
    return {
      id: this.generationId,
      promptIds,
      maxTokens,
      sampling: plan.sampling,
      speculation: plan.speculate ? 'sssd' : 'off',
      ...(plan.ignoreEos ? { ignoreEos: true } : {}),
      ...(plan.stopTokenIds.length > 0 ? { stopTokenIds: plan.stopTokenIds } : {}),
      ...(plan.minTokens > 0 ? { minTokens: plan.minTokens } : {}),
      // The pool stops generating where one of them ends the text, as the edge finds it (the edge still cuts the text):
      // one too long for the pool is found here alone, which ends the text no later. A pool from before them ignores them.
      ...(this.poolStops.length > 0 ? { stopStrings: this.poolStops, stopMatcher: STOP_MATCHER_VERSION } : {}),
      ...(plan.allowedTokenIds ? { allowedTokenIds: plan.allowedTokenIds } : {}),
      ...(plan.badWords.length > 0 ? { badWords: plan.badWords } : {}),
      ...(plan.choices !== null ? { choices: plan.choices } : {}),
      ...(plan.regex != null ? { regex: plan.regex } : {}),
      ...(plan.grammar != null ? { grammar: plan.grammar } : {}),
      // Ids meant for this model, in this edge's protocol: a pool serving another, or of another release, refuses
      // them (421), and the next one is tried (a cold isolate has not yet asked every pool its /v1/info).
      protocol: PROTOCOL_VERSION,
      model: modelIdentity(deps.model.info),
      ...(trie && trie.length > 0 ? { trie: bytesToBase64(trie) } : {}),
      ...(plan.logprobs !== null ? { logprobs: plan.logprobs } : {}),
      // A resumed generation is sent them again: a pool without them would list the most likely tokens.
      ...(plan.logprobs !== null && plan.logprobIds ? { logprobIds: plan.logprobIds } : {}),
      // The prompt is scored before the first token, by the first pool that got that far.
      ...(scored !== null ? { promptLogprobs: scored } : {}),
      cacheSalt: plan.cacheSalt,
      tenant: plan.tenant,
      ...(plan.contributeToDatastore ? { contributeToDatastore: true } : {}),
      ...(resumedOutputTokens > 0 ? { resumedOutputTokens } : {}),
      ...(plan.speculate && plan.predictionIds && plan.predictionIds.length > 0 ? { predictionIds: plan.predictionIds } : {}),
    };
  }

  /** Alternatives per prompt token the pool is asked for: enough for the echo's logprobs and for prompt_logprobs (null = no scoring). */
  private promptScoresAsked(): number | null {
    const { plan } = this;
    const forEcho = plan.echo !== null && plan.logprobs !== null ? plan.logprobs : null;
    const forList = plan.promptLogprobs ?? null;
    return forEcho === null ? forList : forList === null ? forEcho : Math.max(forEcho, forList);
  }

  private async openOn(request: GenerateInput, midReply = false): Promise<void> {
    const { deps } = this;
    try {
      this.opened = await openGeneration(deps.picker, request, this.controller.signal, deps.waitUntil, deps.poolStallMs, this.markAccepted, () => midReply || this.replyStarted, this.poolTries);
    } catch (err) {
      this.failedWith ??= loggedErrorCode(err);
      this.finish();
      throw namedRefusal(err, this.plan.constraintParam);
    }
    this.client = this.opened.client;
    // Tried again after a pool took it in and failed before its first token, it runs under another id there.
    this.generationId = this.opened.id;
    if (this.cancelled) deps.waitUntil(this.opened.client.cancel(this.generationId).catch(() => undefined));
  }

  /** Yields released text segments, one array per pool step; returns the summary. Call after open(). */
  async *run(): AsyncGenerator<SourcedText[], CompletionSummary> {
    const { plan, deps } = this;
    if (!this.opened) throw new Error('CompletionRun.run() before open()');
    const promptLast = plan.promptIds[plan.promptIds.length - 1];
    // The ids that end the reply print nothing (the end token wherever it comes, under ignoreEos too), unless asked for.
    const silent = plan.includeStop || plan.stopTokenIds.length === 0 ? deps.model.eosIds : new Set([...deps.model.eosIds, ...plan.stopTokenIds]);
    const assembler = new TokenTextAssembler(deps.model.tokenizer.createDecoder({ previousId: promptLast }), plan.stops, silent, { includeStop: plan.includeStop, minTokens: plan.minTokens });
    let finishReason: 'stop' | 'length' = 'length';
    let poolUsage: SpeculationUsage | null = null;
    try {
      // The echoed prompt comes first; scored, once the pool has read it.
      if (plan.echo !== null && plan.logprobs === null && plan.echo.length > 0) yield [{ text: plan.echo, source: 'model' }];
      // The edge found a stop string the pool stops at too, at the last token the pool sent.
      let atPoolStop = false;
      streams: for (;;) {
        const opened = this.opened;
        let broke: string | null = null;
        // Read by hand, not with for-await: leaving that loop would close the stream at once (see the stop below).
        for (;;) {
          const next = await opened.events.next();
          if (next.done) break;
          const event = next.value;
          if (this.cancelled) break streams;
          if (atPoolStop) {
            // The text is whole: the pool's `done` brings its exact usage; tokens past the stop mean it did not stop there.
            if (event.type === 'done') {
              if (event.finishReason === 'stop' || event.finishReason === 'length') poolUsage = event.usage.speculation;
              break streams;
            }
            if (event.type === 'tokens') this.stopAtPool(opened);
            if (event.type === 'tokens' || event.type === 'error') break streams;
            continue;
          }
          // The request's own fault (its masks left no token): another pool would refuse it too, so no resume.
          if (event.type === 'error' && event.code === 'bad_request') throw namedRefusal(new ApiError(400, `The inference pool rejected the request: ${event.message}`, 'invalid_request_error', 'pool_rejected'), this.plan.constraintParam);
          broke = interruption(event, deps.model.tokenizer.vocabSize);
          if (broke !== null) break;
          const outcome = this.onEvent(event, assembler);
          if (outcome.segments.length > 0) yield outcome.segments;
          if (outcome.stopped) {
            finishReason = 'stop';
            // A stop the pool follows, at the last token it sent: it has ended the generation there itself, and its
            // `done` comes next (no cancel to send, and its speculation figures are the whole generation's).
            if (event.type === 'tokens' && this.counted === this.outputIds.length && this.poolStops.includes(assembler.stopString ?? '')) {
              atPoolStop = true;
              continue;
            }
            this.stopAtPool(opened);
            break streams;
          }
          if (event.type === 'done') {
            finishReason = event.finishReason === 'stop' ? 'stop' : 'length';
            poolUsage = event.usage.speculation;
            if (this.resumes === 0) this.cachedTokens = event.usage.cachedPromptTokens ?? this.cachedTokens;
            break streams;
          }
        }
        if (broke === null) break;
        await opened.events.return(undefined as never).catch(() => undefined);
        // Every token was in before the pool failed: the end is known without it.
        const ended = this.endedWithoutDone();
        if (ended !== null) {
          finishReason = ended;
          break;
        }
        if (this.resumes >= MAX_RESUMES) {
          // The cause is the operator's (a runtime's message can name files and shapes): logged here, not sent.
          console.error(`edge: generation ${this.plan.id} failed ${MAX_RESUMES + 1} times (the first and ${MAX_RESUMES} resumes); the last: ${broke}`);
          throw new ApiError(500, `Generation failed at the inference pool ${MAX_RESUMES + 1} times (the first try and ${MAX_RESUMES} resumes); the operator's logs have the cause under ${this.plan.id}.`, 'server_error', 'pool_error', null, undefined, false);
        }
        await this.resume(broke);
      }
      if (!assembler.stopped) {
        const tail = assembler.finish();
        // The decoder's last held bytes (a U+FFFD) can complete a stop string: the output ended at a stop.
        if (assembler.stopped) finishReason = 'stop';
        if (tail.length > 0) yield tail;
      }
      this.endedWith = finishReason;
    } catch (err) {
      this.failedWith ??= loggedErrorCode(err);
      throw err;
    } finally {
      if (this.closing === null) await this.opened.events.return(undefined as never).catch(() => undefined);
      this.saveCache();
      this.finish();
    }
    return { finishReason, stopReason: finishReason === 'stop' ? (assembler.stopString ?? this.stopTokenId()) : null, usage: this.usage(poolUsage), promptLogprobs: this.promptLogprobs };
  }

  /**
   * Tells the pool of a stop string the edge found, then closes the stream: closed first, the pool would count the
   * generation as cut off (a client gone) rather than ended at a stop.
   */
  private stopAtPool(opened: OpenedGeneration): void {
    const events = opened.events;
    this.closing = opened.client
      .cancel(this.generationId, 'stop')
      .catch(() => undefined)
      .then(() => events.return(undefined as never))
      .catch(() => undefined);
    this.deps.waitUntil(this.closing);
  }

  /** vLLM's stop_reason for a reply that ended at a stop token id (not at the end token, whose is null). */
  private stopTokenId(): number | null {
    const last = this.outputIds.at(-1);
    if (last === undefined || !this.plan.stopTokenIds.includes(last)) return null;
    return !this.plan.ignoreEos && this.deps.model.eosIds.has(last) ? null : last;
  }

  /** 'stop' or 'length' when the output received so far is a whole generation (its pool failed before saying so); else null. */
  private endedWithoutDone(): 'stop' | 'length' | null {
    const n = this.outputIds.length;
    if (n > 0 && generationEndIds(this.deps.model.eosIds, this.plan.ignoreEos, this.plan.stopTokenIds).has(this.outputIds[n - 1])) return 'stop';
    // As the pool: the last token may sit at position contextLength (emitted, never fed).
    if (n >= this.plan.maxTokens || this.plan.promptIds.length + n > this.deps.model.info.model.contextLength) return 'length';
    return null;
  }

  /**
   * The pool failed mid-stream: open the generation again, on another pool
   * where there is one, with the output so far as part of its prompt. The
   * same seed and the positions' sampling noise make the rest what the
   * first pool would have written; the penalties count the output so far as
   * output (resumedOutputTokens).
   */
  private async resume(reason: string): Promise<void> {
    const { plan, deps } = this;
    if (this.clientStillThere && !(await this.clientStillThere())) this.cancel();
    if (this.cancelled) throw new ApiError(400, 'The client left; the generation was not resumed.', 'invalid_request_error', 'cancelled');
    const failed = this.client!;
    deps.picker.markFailed(failed.baseUrl);
    // Where the pool lives on, its generation must not (a cut connection it has not noticed yet).
    deps.waitUntil(failed.cancel(this.generationId).catch(() => undefined));
    this.outputBase = this.outputIds.length;
    // Counted once it opened (below): a stream cut off with no pool to go on logged `resumes: 1` (review h228).
    this.generationId = `${plan.id}.r${this.resumes + 1}`;
    // Where it goes on, as far as the edge knows now: with one pool, there is no other (review h223 read "another").
    const where = deps.picker.size > 1 ? 'on another pool (or this one again, where none other is up)' : 'on the same pool, the only one, once it answers again';
    console.warn(`edge: generation ${plan.id} resumes ${where} after ${this.outputBase} tokens (${failed.baseUrl}: ${reason})`);
    const promptIds = plan.promptIds.concat(this.outputIds);
    this.resuming = true;
    try {
      // The client has part of the answer: busy pools are waited for (their hint, up to the stall window), not given up on.
      await this.openOn(this.generateRequest(promptIds, plan.maxTokens - this.outputBase, this.draftTrie(promptIds, this.outputBase), this.outputBase), true);
      this.resumes += 1;
      this.resuming = false;
    } catch (err) {
      // No pool left that honours what it sets (the one that did failed): said so, not as a wait for a pool.
      if (err instanceof UnhonouredFeaturesError) {
        throw new ApiError(
          503,
          `The generation was cut off after ${this.outputBase} tokens: its pool failed, and no other pool up here honours ${err.fields.join(', ')} (the others are from before it). A retry starts it over.`,
          'service_unavailable',
          'pool_unavailable',
          err.param,
          err.retryAfterS,
        );
      }
      // Every pool refuses this edge for its configuration (its pinned weights, release, token): a retry would not help either.
      if (err instanceof ApiError && err.code === 'pool_unavailable' && err.shouldRetry === false) {
        throw new ApiError(503, `The generation was cut off after ${this.outputBase} tokens: its pool failed, and no other will go on with it. ${err.message}`, 'service_unavailable', 'pool_unavailable', null, err.retryAfterS, false);
      }
      // Mid-reply, "retry shortly" would misread: the client has part of an answer, and a retry starts it over.
      if (err instanceof ApiError && err.code === 'pool_unavailable') {
        // The silence the client sat through: the stall window, then the resume's tries (~twice the window with one pool), not the window alone (review h241).
        const silentS = this.lastTokensAt > 0 ? Math.max(1, Math.round((Date.now() - this.lastTokensAt) / 1000)) : Math.max(1, Math.round(deps.poolStallMs / 1000));
        // With one pool, "no other" read as if there were others (review h235); the resume was waited for on it.
        const why = deps.picker.size > 1 ? 'its pool failed and no other could go on with it' : 'its pool, the only one here, failed and could not go on with it';
        throw new ApiError(
          503,
          `The generation was cut off after ${this.outputBase} tokens: ${why} in the ${silentS} s since its last tokens. A retry starts it over.`,
          'service_unavailable',
          'pool_unavailable',
          null,
          err.retryAfterS,
        );
      }
      throw err;
    }
  }

  private onEvent(event: PoolEvent, assembler: TokenTextAssembler): { segments: SourcedText[]; stopped: boolean } {
    switch (event.type) {
      case 'tokens': {
        const now = Date.now();
        if (this.firstTokenAt === 0) this.firstTokenAt = now;
        this.lastTokensAt = now;
        const before = this.outputIds.length;
        for (const id of event.ids) this.outputIds.push(id);
        this.steps += 1;
        if (event.drafted > 0) this.drafts += 1;
        this.draftTokens += event.drafted;
        this.acceptedTokens += event.accepted;
        const logprobs = event.logprobs?.map((logprob, i): TokenLogprob => ({ id: event.ids[i], logprob, top: event.topLogprobs?.[i] ?? [] }));
        const { segments, stopped, consumed } = assembler.push(event.ids, event.sources, logprobs);
        for (let i = 0; i < consumed; i++) if (event.sources[i] === 'edge') this.edgeAccepted += 1;
        this.counted = before + consumed;
        return { segments, stopped };
      }
      case 'prompt-logprobs': {
        const { echo, logprobs: echoTop, promptLogprobs: listTop } = this.plan;
        // Once: a pool that failed after scoring the prompt (before any token) is not asked again.
        if (this.promptScored) return { segments: [], stopped: false };
        this.promptScored = true;
        const ids = this.plan.promptIds;
        const tokenizer = this.deps.model.tokenizer;
        if (listTop !== undefined && listTop !== null) this.promptLogprobs = promptLogprobsOf(ids, event.logprobs, event.topLogprobs, listTop, tokenizer, event.ranks);
        if (echo === null || echoTop === null) return { segments: [], stopped: false };
        // Each token's text as decoding the prompt gives it: the texts join to the echo (a prompt the tokenizer round-trips).
        const decoder = tokenizer.createDecoder();
        // The pool sent as many alternatives as the larger of logprobs and prompt_logprobs asked: the echo shows logprobs' many.
        const topOf = (i: number): Array<[number, number]> => {
          const top = event.topLogprobs?.[i - 1] ?? [];
          return top.length > echoTop ? top.slice(0, echoTop) : top;
        };
        const tokens: TokenLogprob[] = ids.map((id, i) => ({
          id,
          logprob: i === 0 ? null : event.logprobs[i - 1],
          top: i === 0 ? null : topOf(i),
          text: decoder.push(id),
        }));
        // A prompt ending inside a character (token ids): its bytes print as U+FFFD in the echo, so in its last token too.
        const rest = decoder.flush();
        if (rest !== '' && tokens.length > 0) tokens[tokens.length - 1].text += rest;
        return { segments: [{ text: echo, source: 'model', tokens }], stopped: false };
      }
      case 'start':
        if (this.resumes === 0) this.cachedTokens = event.cachedPromptTokens ?? 0;
        return { segments: [], stopped: false };
      case 'trie-exhausted':
        this.pushFreshTrie(event.outputLength);
        return { segments: [], stopped: false };
      default:
        return { segments: [], stopped: false };
    }
  }

  /**
   * A trie from the user's cache continuing `context`, the prompt and the first `outputLength` output tokens, no
   * deeper than the tokens left allow (null: speculation off, no cache (yet), or nothing to draft).
   */
  private draftTrie(context: number[], outputLength: number): Uint8Array | null {
    if (!this.plan.speculate || !this.loaded) return null;
    return draftUserTrie(this.loaded.cache, context, this.deps.edgeTrieNodes, this.plan.sampling.temperature, edgeTrieDepth(this.plan.maxTokens, outputLength));
  }

  /**
   * Drafts a trie for prompt + output so far and pushes it to the running
   * generation: the accepted path left the shipped one, or the user's cache
   * came after the generation opened. `outputLength` counts the current
   * pool's generation's output (after a resume, the tokens since). Never awaited.
   */
  private pushFreshTrie(outputLength: number): void {
    const client = this.client;
    if (!client || this.cancelled || this.finished) return;
    // Each push is a subrequest, which Workers bound per request (review h151): past the cap, the pool drafts on
    // from its own sources.
    if (this.triePushes >= (this.deps.edgeTriePushes ?? EDGE_TRIE_PUSHES)) return;
    const length = Math.min(this.outputBase + outputLength, this.outputIds.length);
    const trie = this.draftTrie(this.plan.promptIds.concat(this.outputIds.slice(0, length)), length);
    if (trie === null) return;
    this.triePushes++;
    if (this.trieBytes === 0) this.trieBytes = trie.length;
    this.deps.waitUntil(client.pushTrie(this.generationId, { outputLength: length - this.outputBase, trie: bytesToBase64(trie) }).catch(() => undefined));
  }

  private saveCache(): void {
    const { userCache } = this.plan;
    const { store } = this.deps;
    if (!this.plan.saveToCache || !userCache || store === null) return;
    const tokens = this.plan.promptIds.concat(this.outputIds.slice(0, this.counted));
    // After a read that has not come yet (or never will: the Worker's waitUntil time bounds it).
    this.deps.waitUntil(userCache.then((loaded) => store.saveMerged(loaded, tokens)));
  }

  private predictionDetails(): NonNullable<CompletionUsage['completion_tokens_details']> {
    const { accepted, rejected } = matchPrediction(this.plan.predictionIds ?? [], this.outputIds.slice(0, this.counted));
    return { accepted_prediction_tokens: accepted, rejected_prediction_tokens: rejected };
  }

  /** The usage of what it generated so far (a run stopped or failed before its end, which the request log bills). */
  usageSoFar(): CompletionUsage {
    return this.usage(null);
  }

  private usage(pool: SpeculationUsage | null): CompletionUsage {
    const completion = this.counted;
    // The pool's figures cover the whole generation; after a stop string the edge's own count is exact.
    // After a resume the last pool saw only part of the generation: the edge's own counts are the whole.
    const exact = pool !== null && completion === this.outputIds.length && this.resumes === 0;
    const drafts = exact ? pool.drafts : this.drafts;
    const accepted = exact ? pool.acceptedTokens : this.acceptedTokens;
    return {
      prompt_tokens: this.plan.promptIds.length,
      completion_tokens: completion,
      total_tokens: this.plan.promptIds.length + completion,
      prompt_tokens_details: { cached_tokens: this.cachedTokens },
      ...(this.plan.predictionIds ? { completion_tokens_details: this.predictionDetails() } : {}),
      speculation: {
        method: this.plan.speculate ? 'sssd' : 'off',
        drafts,
        draft_tokens: exact ? pool.draftTokens : this.draftTokens,
        accepted_tokens: accepted,
        steps: exact ? pool.steps : this.steps,
        // As the pool defines it (shared/protocol.ts): tokens emitted per step.
        mean_acceptance_length: exact ? pool.meanAcceptanceLength : this.steps > 0 ? completion / this.steps : 0,
        edge_accepted_tokens: this.edgeAccepted,
        edge_trie_bytes: this.trieBytes,
      },
    };
  }
}

/**
 * The edge trie the user's cache drafts for `context` (a greedy request's
 * with their verbatim history as a chain), at most `maxDepth` tokens deep
 * (edgeTrieDepth), or null: an empty cache, no nodes or depth allowed,
 * nothing drafted, or a drafting fault (logged; the request goes on without
 * it).
 */
export function draftUserTrie(cache: UserCache, context: number[], maxNodes: number, temperature: number, maxDepth: number): Uint8Array | null {
  if (maxNodes === 0 || maxDepth < 1 || cache.isEmpty) return null;
  try {
    const trie = draftEdgeTrie(cache, context, { maxNodes, historyChain: temperature === 0, maxDepth });
    return trie.length > 0 ? trie : null;
  } catch (err) {
    console.warn('edge: drafting the edge trie failed; going on without it', err);
    return null;
  }
}

/** Why a pool's event means its generation broke off (null: it did not). */
function interruption(event: PoolEvent, vocabSize: number): string | null {
  if (event.type === 'error') return event.message;
  // A token this model does not have (a pool of another model behind a proxy, a pool bug): the pool failed, so
  // another goes on; decoded, it threw and cost the client its generation.
  if (event.type === 'tokens') {
    for (const id of event.ids) if (id >= vocabSize) return `pool sent token ${id}, outside the vocabulary (size ${vocabSize})`;
  }
  if (event.type !== 'done') return null;
  if (event.finishReason === 'error') return 'the generation failed';
  // Not the edge's cancel (run() stops reading at its own): the pool shut down under it.
  if (event.finishReason === 'cancelled') return 'the pool cancelled the generation';
  return null;
}
