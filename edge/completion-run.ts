/**
 * One completion from the edge's side: open it on a pool (with failover), turn
 * the pool's token bursts into released text segments (decoder + stop strings),
 * answer 'trie-exhausted' with a fresh edge trie (fire-and-forget), push the
 * first trie when the user's cache came after the generation opened, cancel at
 * the pool on stop or client disconnect, and finally merge prompt + output into
 * the user's cache with one bounded write (waitUntil).
 */
import type { PoolEvent, SpeculationUsage } from '../shared/protocol';
import { draftEdgeTrie } from '../shared/drafting/edge-trie';
import { ApiError } from './api-error';
import { bytesToBase64 } from './base64';
import { openGeneration, type OpenedGeneration } from './open-generation';
import type { GenerateInput, PoolClient } from './pool-client';
import type { PoolPicker } from './pool-picker';
import type { ServedModel } from './served-model';
import { TokenTextAssembler, type SourcedText, type TokenLogprob } from './token-text';
import type { LoadedUserCache, UserCacheStore } from './user-cache-store';

export interface CompletionPlan {
  id: string;
  promptIds: number[];
  maxTokens: number;
  sampling: { temperature: number; topP: number; topK: number; seed?: number; frequencyPenalty: number; presencePenalty: number; repetitionPenalty: number; logitBias?: Record<string, number> };
  speculate: boolean;
  stops: string[];
  /** The user's cache, read from KV as the request came in (it may come after the generation opened). */
  userCache: Promise<LoadedUserCache>;
  /** The edge trie drafted for the prompt, shipped with it (null: speculation off, an empty cache, or one not in yet). */
  trie: Uint8Array | null;
  /** The cache was not in when the generation opened: once it comes, its trie is pushed to the running generation. */
  trieFollows: boolean;
  /** Log-probabilities asked: of each token and of this many most likely ones (null = none). */
  logprobs: number | null;
  /** Merge prompt + output into the user's cache at the end (one choice of n does). */
  saveToCache: boolean;
  /** Completions' `echo`: the prompt's text, sent before the completion (with `logprobs`: its tokens scored). */
  echo: string | null;
  /** The pool's prefix-caching scope (the key's tenant, hashed): prompts share cached prefixes only within it. */
  cacheSalt: string;
  /** Let the pool add prompt + output to its global datastore (the key opted in; one choice of n does). */
  contributeToDatastore: boolean;
}

export interface CompletionDeps {
  picker: PoolPicker;
  model: ServedModel;
  store: UserCacheStore;
  waitUntil: (promise: Promise<unknown>) => void;
  edgeTrieNodes: number;
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
  usage: CompletionUsage;
}

export class CompletionRun {
  private readonly controller = new AbortController();
  private opened: OpenedGeneration | null = null;
  private client: PoolClient | null = null;
  private cancelled = false;
  private finished = false;
  /** Output ids (all received; `counted` of them are the completion). */
  private readonly outputIds: number[] = [];
  private counted = 0;
  private drafts = 0;
  private draftTokens = 0;
  private acceptedTokens = 0;
  private steps = 0;
  private edgeAccepted = 0;
  /** The user's cache once it has come (re-drafting on 'trie-exhausted' needs it). */
  private loaded: LoadedUserCache | null = null;
  private trieBytes: number;

  constructor(
    private readonly plan: CompletionPlan,
    private readonly deps: CompletionDeps,
  ) {
    this.trieBytes = plan.trie?.length ?? 0;
    void plan.userCache.then((loaded) => {
      this.loaded = loaded;
    });
  }

  /**
   * Client went away: stop the generation at the pool, and count the run as
   * finished now. Its stream may never be read again (a response whose client
   * left before its headers is dropped unread), so run()'s own end cannot be
   * what frees the key's in-flight slot.
   */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.controller.abort();
    this.finish();
    if (this.client) this.deps.waitUntil(this.client.cancel(this.plan.id).catch(() => undefined));
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
    const request: GenerateInput = {
      id: plan.id,
      promptIds: plan.promptIds,
      maxTokens: plan.maxTokens,
      sampling: plan.sampling,
      speculation: plan.speculate ? 'sssd' : 'off',
      ...(plan.trie && plan.trie.length > 0 ? { trie: bytesToBase64(plan.trie) } : {}),
      ...(plan.logprobs !== null ? { logprobs: plan.logprobs } : {}),
      ...(plan.echo !== null && plan.logprobs !== null ? { promptLogprobs: plan.logprobs } : {}),
      cacheSalt: plan.cacheSalt,
      ...(plan.contributeToDatastore ? { contributeToDatastore: true } : {}),
    };
    try {
      this.opened = await openGeneration(deps.picker, request, this.controller.signal, deps.waitUntil);
    } catch (err) {
      this.finish();
      throw err;
    }
    this.client = this.opened.client;
    if (this.cancelled) deps.waitUntil(this.opened.client.cancel(plan.id).catch(() => undefined));
    // The cache came too late to ship a trie with the request: push one for where the stream is when it does.
    else if (plan.trieFollows) deps.waitUntil(plan.userCache.then(() => this.pushFreshTrie(this.outputIds.length)));
  }

  /** Yields released text segments, one array per pool step; returns the summary. Call after open(). */
  async *run(): AsyncGenerator<SourcedText[], CompletionSummary> {
    const { plan, deps } = this;
    const opened = this.opened;
    if (!opened) throw new Error('CompletionRun.run() before open()');
    const promptLast = plan.promptIds[plan.promptIds.length - 1];
    const assembler = new TokenTextAssembler(deps.model.tokenizer.createDecoder({ previousId: promptLast }), plan.stops, deps.model.eosIds);
    let finishReason: 'stop' | 'length' = 'length';
    let poolUsage: SpeculationUsage | null = null;
    let cachedTokens = 0;
    try {
      // The echoed prompt comes first; scored, once the pool has read it.
      if (plan.echo !== null && plan.logprobs === null && plan.echo.length > 0) yield [{ text: plan.echo, source: 'model' }];
      for await (const event of opened.events) {
        if (this.cancelled) break;
        const outcome = this.onEvent(event, assembler);
        if (outcome.segments.length > 0) yield outcome.segments;
        if (outcome.stopped) {
          finishReason = 'stop';
          deps.waitUntil(opened.client.cancel(plan.id).catch(() => undefined));
          break;
        }
        if (event.type === 'done') {
          if (event.finishReason === 'error') {
            throw new ApiError(500, 'Generation failed at the inference pool.', 'server_error', 'pool_error');
          }
          finishReason = event.finishReason === 'stop' ? 'stop' : 'length';
          poolUsage = event.usage.speculation;
          cachedTokens = event.usage.cachedPromptTokens ?? 0;
          break;
        }
      }
      if (!assembler.stopped) {
        const tail = assembler.finish();
        if (tail.length > 0) yield tail;
      }
    } finally {
      await opened.events.return(undefined as never).catch(() => undefined);
      this.saveCache();
      this.finish();
    }
    return { finishReason, usage: this.usage(poolUsage, cachedTokens) };
  }

  private onEvent(event: PoolEvent, assembler: TokenTextAssembler): { segments: SourcedText[]; stopped: boolean } {
    switch (event.type) {
      case 'tokens': {
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
        const echo = this.plan.echo;
        if (echo === null) return { segments: [], stopped: false };
        const ids = this.plan.promptIds;
        const tokens: TokenLogprob[] = ids.map((id, i) => (i === 0 ? { id, logprob: null, top: null } : { id, logprob: event.logprobs[i - 1], top: event.topLogprobs?.[i - 1] ?? [] }));
        return { segments: [{ text: echo, source: 'model', tokens }], stopped: false };
      }
      case 'trie-exhausted':
        this.pushFreshTrie(event.outputLength);
        return { segments: [], stopped: false };
      case 'error':
        throw new ApiError(500, `Generation failed at the inference pool: ${event.message}`, 'server_error', 'pool_error');
      default:
        return { segments: [], stopped: false };
    }
  }

  /**
   * Drafts a trie for prompt + output so far and pushes it to the running
   * generation: the accepted path left the shipped one, or the user's cache
   * came after the generation opened. Never awaited.
   */
  private pushFreshTrie(outputLength: number): void {
    const client = this.client;
    if (!client || !this.plan.speculate || this.cancelled || this.finished) return;
    const cache = this.loaded?.cache;
    if (!cache || cache.isEmpty) return;
    const length = Math.min(outputLength, this.outputIds.length);
    const context = this.plan.promptIds.concat(this.outputIds.slice(0, length));
    let trie: Uint8Array;
    try {
      trie = draftEdgeTrie(cache, context, { maxNodes: this.deps.edgeTrieNodes, historyChain: this.plan.sampling.temperature === 0 });
    } catch (err) {
      console.warn('edge: re-drafting the trie failed', err);
      return;
    }
    if (trie.length === 0) return;
    if (this.trieBytes === 0) this.trieBytes = trie.length;
    this.deps.waitUntil(client.pushTrie(this.plan.id, { outputLength: length, trie: bytesToBase64(trie) }).catch(() => undefined));
  }

  private saveCache(): void {
    if (!this.plan.saveToCache) return;
    const tokens = this.plan.promptIds.concat(this.outputIds.slice(0, this.counted));
    // After a read that has not come yet (or never will: the Worker's waitUntil time bounds it).
    this.deps.waitUntil(this.plan.userCache.then((loaded) => this.deps.store.saveMerged(loaded, tokens)));
  }

  private usage(pool: SpeculationUsage | null, cachedTokens: number): CompletionUsage {
    const completion = this.counted;
    // The pool's figures cover the whole generation; after a stop string the edge's own count is exact.
    const exact = pool !== null && completion === this.outputIds.length;
    const drafts = exact ? pool.drafts : this.drafts;
    const accepted = exact ? pool.acceptedTokens : this.acceptedTokens;
    return {
      prompt_tokens: this.plan.promptIds.length,
      completion_tokens: completion,
      total_tokens: this.plan.promptIds.length + completion,
      prompt_tokens_details: { cached_tokens: cachedTokens },
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
