/**
 * Who gets a batch row. A request is checked first (what no load would make
 * valid is a 400), then weighed against the pool's limits (rows, queue
 * places, reserved tokens): over them it is refused `busy` with a retry hint,
 * unless another tenant queued more than its share, in which case that
 * tenant's newest queued generation gives its place (fair-shares.ts,
 * queuePlacesFor). Queued generations take free rows in their tenants' turn
 * (FairShares.next), the last --tenant-reserve of them only a tenant's with
 * none running while the pool is shared (tenant-reserve.ts): those rows are
 * no places for the others' requests, nor held while draining. Every row
 * taken, such a tenant's generation may take one from the tenant holding the
 * most, which resumes later by recompute (--preempt: preemption.ts). The step loop
 * (scheduler.ts) runs the rows in `active`; whatever ends a generation hands
 * its row and reservation back here.
 */
import { followedStopString, MAX_STOP_STRINGS, STOP_MATCHER_VERSION, type GenerateRequest } from '../../shared/protocol';
import { drawnSeed } from '../../shared/sampling/request-seed';
import { GumbelNoise } from '../../shared/sampling/gumbel-noise';
import { edgeTrieMalformation, edgeTrieTokenOutside } from '../../shared/drafting/edge-trie';
import { generationEndIds } from '../../shared/end-ids';
import { allowedIdsLeft } from '../../shared/allowed-ids-left';
import { hasLogitAdjustments, LogitAdjustments } from '../verify/logit-adjustments';
import { DEAD, REQUEST_MASK_BOUNDS, TextLanguage, TextMasks, type RequestMaskBounds } from '../verify/text-masks';
import { AutomatonLimitError, compileRegex, RegexSyntaxError } from '../../shared/structured/regex-automaton';
import { UnprintableTextError } from '../../shared/structured/unprintable-text-error';
import { compileGrammar, GrammarSyntaxError } from '../../shared/structured/grammar-automaton';
import type { LazyDfa, MemberSet } from '../../shared/structured/lazy-dfa';
import type { TokenTexts } from '../verify/token-texts';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { StopStrings } from './stop-strings';
import { RecentMedian } from '../budget/recent-median';
import type { PoolMetrics } from '../metrics/pool-metrics';
import { logLine } from '../metrics/log-line';
import type { BatchRunner, RunnerSequence } from './batch-runner';
import { Generation, type Drafter, type GenerationSink } from './generation';
import { AdmissionError } from './admission-error';
import type { PrefixReuse } from './prefix-reuse';
import { FairShares, queuePlacesFor } from './fair-shares';
import { TenantReserve } from './tenant-reserve';
import { preemptionVictim } from './preemption';
import { draftRoomFor, historyChainOf } from './row-drafting';

export interface SchedulerLimits {
  /** Rows in the running batch. */
  maxActive: number;
  /** Generations waiting for a row. */
  maxQueued: number;
  /** Sum over active + queued of prompt + maxTokens (clamped to the context). */
  maxTotalTokens: number;
  /** Rows that, while tenants share the pool, only a tenant with none running may take (tenant-reserve.ts); absent: 0, none. */
  tenantReserve?: number;
  /** Whether such a tenant's generation, every row taken, may take one from the tenant holding the most (preemption.ts); absent: no. */
  preempt?: boolean;
  /** How long the pool counts as shared after another tenant's last generation left (TenantReserve's window); absent: TENANT_RESERVE_WINDOW_MS. Tests set it. */
  tenantReserveWindowMs?: number;
}

/** Steps the busy hint's step time is the median of. */
const STEP_MS_SAMPLES = 15;
/** Regex and grammar languages kept (with the ids allowed at their states) for the requests that send the same one again, and their DFA states in all, at most. */
const KEPT_LANGUAGES = 16;
const KEPT_LANGUAGE_STATES = 40_000;

/** The structured outputs a pool compiles to a lazy automaton, shared by the requests that send the same text. */
type CompiledKind = 'regex' | 'grammar';
/** Which field a structured output came in (its errors and its metric name it). */
type StructuredKind = 'choices' | CompiledKind;


export interface AdmissionOptions<S extends RunnerSequence> {
  runner: BatchRunner<S>;
  limits: SchedulerLimits;
  metrics: PoolMetrics;
  /** Builds the per-request drafter (SchedulerOptions.createDrafter). */
  createDrafter: (request: GenerateRequest, expectedLength?: number) => Drafter | null;
  /** The prefix cache a joining prompt starts from; null: none. */
  prefixes: PrefixReuse<S> | null;
  maxTreeNodes: number;
  /** What each token prints, for requests with choices (SchedulerOptions.tokenTexts); null: such requests are refused. */
  tokenTexts?: TokenTexts | null;
  /** The tokenizer whose decoder follows the output's text for stop strings (SchedulerOptions.tokenizer); null: they are left to the edge. */
  tokenizer?: Pick<Tokenizer, 'createDecoder'> | null;
  /** What each request's regex or grammar masks may build (SchedulerOptions.maskBounds); absent: REQUEST_MASK_BOUNDS. */
  maskBounds?: Readonly<RequestMaskBounds>;
  // The two ends are methods, not function-typed fields: those would make a Scheduler<S> no Scheduler<RunnerSequence>.
  /** Ends a generation that leaves the queue without running (Scheduler.finish). */
  end(gen: Generation<S>, reason: 'stop' | 'cancelled' | 'displaced'): void;
  /** Ends a generation whose row could not be had (Scheduler.endWithError). */
  endWithError(gen: Generation<S>, message: string): void;
}

export class Admission<S extends RunnerSequence> {
  /** The running batch's rows, oldest first: the step loop's. */
  readonly active: Generation<S>[] = [];
  /** Generations waiting for a row, oldest first. */
  readonly queue: Generation<S>[] = [];
  /** Every admitted generation not yet finished, queued or running. */
  readonly byId = new Map<string, Generation<S>>();
  /**
   * Recent steps' time (ms), for the busy hint: a median, since a fresh pool's
   * first steps (compiling, the first prefill) ran 10-100x a later one's, and
   * an average kept a hint of 6 s for a generation done in half a second. None
   * until a full window of steps has come: a median of the first one or two
   * is those cold steps, and told a restarted pool's first burst to come back
   * in 10-26 s for room made within 2 s.
   */
  readonly stepMs = new RecentMedian(STEP_MS_SAMPLES, STEP_MS_SAMPLES);
  /** Which queued generation a free row goes to: fair-shares.ts. */
  private readonly fairShares = new FairShares();
  /** The rows a tenant with a row running may not take while others share the pool: tenant-reserve.ts. */
  private readonly tenantReserve: TenantReserve;
  /**
   * Free rows the reserve kept from a tenant with rows running (held back at an admission, or refused to its
   * generation at the door) and free since, while no more than the reserve's were: a tenant with none running that
   * takes one is the reserve's admission (sssd_pool_tenant_reserve_admissions_total), not one that finds a row free
   * that no one was kept from.
   */
  private keptRows = 0;
  /**
   * Whether a preemption may be due: set where the queue or the rows change (a generation queued, admitted or
   * gone), cleared by the check. The step loop's check is this flag alone otherwise: O(1) a step.
   */
  private preemptDue = false;
  /** No preemption once the pool drains or closes: everything admitted runs to its end anyway. */
  private preemptClosed = false;
  private reserved = 0;
  private readonly runner: BatchRunner<S>;
  private readonly limits: SchedulerLimits;
  private readonly metrics: PoolMetrics;
  private readonly createDrafter: AdmissionOptions<S>['createDrafter'];
  private readonly prefixes: PrefixReuse<S> | null;
  private readonly maxTreeNodes: number;
  private readonly eos: Set<number>;
  private readonly tokenTexts: TokenTexts | null;
  private readonly tokenizer: Pick<Tokenizer, 'createDecoder'> | null;
  /** Regex and grammar languages by kind and text (compiledKey), least recently used first. */
  private readonly languages = new Map<string, { language: TextLanguage; automaton: LazyDfa<MemberSet> }>();
  /** For its two ends (called through it: see AdmissionOptions). */
  private readonly options: AdmissionOptions<S>;

  constructor(options: AdmissionOptions<S>) {
    this.runner = options.runner;
    this.limits = options.limits;
    this.tenantReserve = new TenantReserve(options.limits.tenantReserve ?? 0, options.limits.tenantReserveWindowMs);
    this.metrics = options.metrics;
    this.createDrafter = options.createDrafter;
    this.prefixes = options.prefixes;
    this.maxTreeNodes = options.maxTreeNodes;
    this.eos = new Set(options.runner.config.eosIds);
    this.tokenTexts = options.tokenTexts ?? null;
    this.tokenizer = options.tokenizer ?? null;
    this.options = options;
    // The per-tenant row and queue gauges count what this admission holds at each scrape.
    this.metrics.tenants.watchRows(() => this);
  }

  /**
   * A request's structured-output masks (choices, a regex or a grammar): its
   * output's first token prints without its leading space where the token
   * before it (the prompt's last before any resumed output) is BOS, as the
   * edge's decoder prints it. A regex's or grammar's language is shared with
   * the generations that ask for the same one (kept for the last
   * KEPT_LANGUAGES texts).
   */
  private textMasks(request: GenerateRequest, prompt: readonly number[], resumed: number): { masks: TextMasks; kind: StructuredKind } | undefined {
    const kinds = structuredKinds(request);
    if (kinds.length === 0) return undefined;
    const field = kinds[0];
    const texts = this.tokenTexts;
    if (!texts) throw new AdmissionError('bad_request', `${field}: this pool has no tokenizer to follow the output's text with`);
    if (kinds.length > 1) throw new AdmissionError('bad_request', `${kinds.join(' and ')}: one structured output at a time`);
    // A whole sentence ends at the model's end token alone (with a structured output, ignoreEos is the edge's 400): a stop
    // token id allowed there as an end wrote its text after it, or ended on it in the text's stead. Inside the text a stop
    // id is a token as any other, and ends the generation there as always.
    if (request.ignoreEos) throw new AdmissionError('bad_request', `${field} with ignoreEos: a structured output ends at the end token, which ignoreEos would not stop at`);
    const before = prompt.length - resumed - 1;
    const firstAfterBos = before >= 0 && prompt[before] === texts.bosId;
    if (field === 'choices') {
      try {
        return { masks: TextMasks.ofChoices(request.choices!, texts, [...this.eos], firstAfterBos), kind: field };
      } catch (err) {
        // Every choice needs a character no token prints: refused before any token, not ended at the first dead end.
        if (err instanceof UnprintableTextError) throw new AdmissionError('bad_request', `choices: ${err.message}`);
        throw err;
      }
    }
    const language = this.compiledLanguage(field, field === 'regex' ? request.regex! : request.grammar!, texts);
    return { masks: new TextMasks(language, firstAfterBos, this.options.maskBounds ?? REQUEST_MASK_BOUNDS), kind: field };
  }

  /**
   * A request's stop strings, followed over its output as the edge decodes
   * it: after the prompt's last token before any resumed output, and through
   * that output (text the edge has searched already). Null: none, or no
   * tokenizer here (the edge's cancel ends the generation then).
   */
  private stopStrings(request: GenerateRequest, prompt: readonly number[], resumed: number): StopStrings | null {
    // Found by this pool's rules unless the sender found them by others (another STOP_MATCHER_VERSION: then they are
    // its to find), and only those it follows. None named asks for this pool's: a client that cuts no text itself.
    if ((request.stopMatcher ?? STOP_MATCHER_VERSION) !== STOP_MATCHER_VERSION || !this.tokenizer || request.maxTokens === 0) return null;
    const stops = (request.stopStrings ?? []).filter(followedStopString).slice(0, MAX_STOP_STRINGS);
    if (stops.length === 0) return null;
    return StopStrings.forGeneration(stops, this.tokenizer, this.eos, request.minTokens, prompt, resumed);
  }

  private compiledLanguage(kind: CompiledKind, text: string, texts: TokenTexts): TextLanguage {
    const languages = this.languages;
    // The kind first: a text that is both a regex and a grammar is two languages.
    const key = `${kind}:${text}`;
    const cached = languages.get(key);
    if (cached) {
      languages.delete(key);
      // Most recently used last: the first is the one to drop. An automaton past half its limits (states, building
      // work: what every generation that shared it has added) is built afresh for the generations to come, so the
      // limits are each request's, not a pattern's for the pool's life.
      if (cached.automaton.used <= 0.5) {
        languages.set(key, cached);
        this.trimLanguages();
        return cached.language;
      }
    }
    let automaton: LazyDfa<MemberSet>;
    try {
      // Cut to the characters this pool's tokenizer prints: a text the masks let through can be finished in them.
      automaton = kind === 'regex' ? compileRegex(text, {}, texts.printable) : compileGrammar(text, {}, texts.printable);
    } catch (err) {
      // A grammar's first configuration is built as it compiles, within its bounds: past them, no output could be followed.
      // No sentence the tokenizer can print: refused now, before the model writes a start nothing can finish.
      if (err instanceof RegexSyntaxError || err instanceof GrammarSyntaxError || err instanceof AutomatonLimitError || err instanceof UnprintableTextError) {
        throw new AdmissionError('bad_request', `${kind}: ${err.message}`);
      }
      throw err;
    }
    if (kind === 'regex') this.metrics.regexCompiles.inc();
    else this.metrics.grammarCompiles.inc();
    const language = new TextLanguage(automaton, texts, [...this.eos]);
    languages.set(key, { language, automaton });
    this.trimLanguages();
    return language;
  }

  /**
   * Keeps the compiled languages within a count and within their states (1 KiB
   * of table each), oldest dropped first: a few large automata go sooner
   * than 16 small ones. Counted at every use, as kept automata grow.
   */
  private trimLanguages(): void {
    const languages = this.languages;
    let states = 0;
    for (const kept of languages.values()) states += kept.automaton.stateCount;
    for (const [oldest, kept] of languages) {
      if (languages.size <= 1 || (languages.size <= KEPT_LANGUAGES && states <= KEPT_LANGUAGE_STATES)) break;
      languages.delete(oldest);
      states -= kept.automaton.stateCount;
    }
  }

  /** Tokens reserved (prompt + maxTokens, within the context) by running and queued generations. */
  get reservedTokens(): number {
    return this.reserved;
  }

  /**
   * Validates and enqueues a generation; its events go to `sink`. Throws
   * AdmissionError ('bad_request', 'conflict' or 'busy') without side
   * effects; where it takes another tenant's queued place, that generation
   * ends (displaced).
   */
  enqueue(request: GenerateRequest, sink: GenerationSink): Generation<S> {
    const ctx = this.runner.config.contextLength;
    const vocab = this.runner.config.vocabSize;
    const prompt = request.promptIds;
    if (prompt.length > ctx) {
      throw new AdmissionError('bad_request', `prompt has ${prompt.length} tokens, more than the model's context length ${ctx}`);
    }
    for (let i = 0; i < prompt.length; i++) {
      if (prompt[i] >= vocab) throw new AdmissionError('bad_request', `promptIds[${i}] = ${prompt[i]} is outside the vocabulary (size ${vocab})`);
    }
    // A draft token past the embedding table would fail the batch's pass (the schema holds the list to PREDICTION_TOKENS).
    checkInVocabulary('predictionIds', request.predictionIds ?? [], vocab);
    if (request.logprobIds) checkInVocabulary('logprobIds', request.logprobIds, vocab);
    const resumed = request.resumedOutputTokens ?? 0;
    if (resumed >= prompt.length) {
      throw new AdmissionError('bad_request', `resumedOutputTokens (${resumed}) must be less than the prompt's ${prompt.length} tokens`);
    }
    if (this.byId.has(request.id)) {
      throw new AdmissionError('conflict', `a generation with id '${request.id}' is already running`);
    }
    for (const id of Object.keys(request.sampling.logitBias ?? {})) {
      if (Number(id) >= vocab) throw new AdmissionError('bad_request', `sampling.logitBias: token ${id} is outside the vocabulary (size ${vocab})`);
    }
    const stopTokenIds = request.stopTokenIds ?? [];
    checkInVocabulary('stopTokenIds', stopTokenIds, vocab);
    const allowed = request.allowedTokenIds;
    if (allowed) checkInVocabulary('allowedTokenIds', allowed, vocab);
    const badWords = request.badWords ?? [];
    for (let i = 0; i < badWords.length; i++) checkInVocabulary(`badWords[${i}]`, badWords[i], vocab);
    const endIds = generationEndIds(this.eos, request.ignoreEos, stopTokenIds);
    if (allowed && request.maxTokens > 0) checkSomethingAllowed(allowed, badWords, request.minTokens > 0 ? endIds : null);
    const structured = this.textMasks(request, prompt, resumed);
    const text = structured?.masks;
    if (structured && request.maxTokens > 0) checkTextAllowsSomething(structured.masks, structured.kind, prompt.slice(prompt.length - resumed), allowed, badWords, request.minTokens > resumed ? endIds : null);
    const reserved = Math.min(ctx + 1, prompt.length + request.maxTokens);
    const { limits } = this;
    if (reserved > limits.maxTotalTokens) {
      throw new AdmissionError('too_large', `request needs ${reserved} tokens; this pool holds at most ${limits.maxTotalTokens}`, undefined, limits.maxTotalTokens);
    }
    const temperature = request.sampling.temperature;
    // An unseeded sampled request gets its seed here, so the verifier and the
    // drafter (which reads the same noise) agree on it.
    if (temperature > 0 && request.sampling.seed === undefined) {
      request = { ...request, sampling: { ...request.sampling, seed: drawnSeed() } };
    }
    // Before the capacity check: a trie that is not base64 or names a token outside the vocabulary is a 400
    // at any load, not a busy answer to retry (the drafter itself is built lazily, so this costs a decode).
    let drafter = request.speculation === 'off' ? null : this.createDrafter(request, reserved);
    if (drafter?.shippedTrie) {
      try {
        checkTrieTokens(drafter.shippedTrie, vocab);
      } catch (err) {
        this.metrics.shippedTries.inc({ result: 'invalid' });
        throw err;
      }
    }
    const tenant = request.tenant ?? '';
    const { active, queue } = this;
    const freeRows = limits.maxActive - active.length;
    // Rows the reserve keeps from this tenant are no place for its generation: it would wait in the queue for them,
    // past --max-queued, while the row stayed empty (review h208). So its places are the queue's and the free rows
    // beyond the reserve; a tenant with none running still finds the kept rows, and every place, open to it.
    const reserveKept = this.tenantReserve.holdsBackFrom(tenant, this.fairShares.runningOf(tenant), performance.now()) ? Math.min(freeRows, this.tenantReserve.rows) : 0;
    const freePlaces = Math.min(
      limits.maxActive + limits.maxQueued - active.length - queue.length,
      reserveKept > 0 ? limits.maxQueued + freeRows - reserveKept - queue.length : Infinity,
    );
    const fitsNow = freePlaces >= 1;
    const tokensFit = this.reserved + reserved <= limits.maxTotalTokens;
    // Full: the place may be another tenant's, one that queued more than its share (fair-shares.ts, queuePlacesFor).
    // A preempted generation has streamed already: its place is not given (the queue's order within its tenant keeps it first).
    const displaced = fitsNow && tokensFit ? [] : queuePlacesFor(tenant, reserved, queue.filter((g) => g.preemptions === 0), {
      freePlaces: Math.max(0, freePlaces),
      freeTokens: limits.maxTotalTokens - this.reserved,
    });
    if (displaced === null) {
      this.metrics.rejected.inc({ reason: 'busy' });
      this.metrics.tenants.refused(this.metrics.tenants.slotOf(tenant, performance.now()), 'busy');
      // Refused for the kept rows alone: they were kept from someone, and the next tenant with none running to take one is counted.
      if (reserveKept > 0 && tokensFit && active.length + queue.length < limits.maxActive + limits.maxQueued) this.keptRows = Math.max(this.keptRows, reserveKept);
      // What runs and waits now, not the limits: a pool holding rows back runs fewer than --max-active.
      const kept = reserveKept > 0 ? `, ${reserveKept} kept free for tenants with none running,` : '';
      const full = !fitsNow
        ? `${active.length} of its ${limits.maxActive} rows running${kept} and ${queue.length} of its ${limits.maxQueued} queued places taken`
        : `${this.reserved} of its ${limits.maxTotalTokens} tokens are reserved and this request needs ${reserved}`;
      throw new AdmissionError('busy', `the pool is at capacity (${full}); retry after the time given`, this.retryAfterMs());
    }
    // Nothing to draft at all (max_tokens 1, or a prompt that fills the context): the drafter was made only to check
    // the trie, and the row runs as `off` does. Drafting for it cost the pool's draft phase 71 µs an output token at
    // concurrency 32 against 2.6 for `off` (review h192).
    const noRoom = drafter !== null && draftRoomFor(prompt.length, 0, request.maxTokens, ctx) === 0;
    if (drafter?.shippedTrie) {
      // A malformed shipped trie is dropped (the drafter ignores it), not refused:
      // the request was valid without it. Counted, so a faulty edge shows; so is
      // one sent where nothing could be drafted, so `used` means used.
      const malformed = edgeTrieMalformation(drafter.shippedTrie) !== null;
      this.metrics.shippedTries.inc({ result: malformed ? 'malformed' : noRoom ? 'unneeded' : 'used' });
    }
    if (drafter && noRoom) {
      drafter.release?.();
      drafter = null;
    }
    if (request.trie !== undefined) {
      // Decoded into the drafter: its base64 text (up to 4 MiB) is not kept for the generation's life.
      const { trie: _decoded, ...rest } = request;
      request = rest;
    }
    const noise = temperature > 0 ? new GumbelNoise(request.sampling.seed ?? 0) : null;
    const gen = new Generation<S>(request, sink, drafter, noise, this.maxTreeNodes, reserved);
    gen.prefixEpoch = this.prefixes?.epoch ?? 0;
    if (drafter?.shippedTrie && noise === null) gen.historyChain = historyChainOf(drafter.shippedTrie, null, 0);
    gen.endIds = endIds;
    // Drafts are cut to it (row-drafting.ts); its masks apply through `adjustments`, which a structured output always has.
    gen.textMasks = text ?? null;
    gen.stopStrings = this.stopStrings(request, prompt, resumed);
    const ends = { ids: [...gen.endIds], minTokens: request.minTokens, allowed, badWords, text };
    if (hasLogitAdjustments(request.sampling, ends)) {
      // A resumed generation's earlier output, at the prompt's end, is output to the penalties and to min_tokens.
      const adjustments = new LogitAdjustments(request.sampling, vocab, prompt.slice(0, prompt.length - resumed), ends);
      for (let i = prompt.length - resumed; i < prompt.length; i++) adjustments.observe(prompt[i]);
      gen.adjustments = adjustments;
    }
    if (structured) this.metrics.structuredOutputs.inc({ kind: structured.kind });
    if (resumed > 0) {
      this.metrics.resumedGenerations.inc();
      this.metrics.resumedOutputTokens.inc(resumed);
    }
    // Ends a queued generation that gives its place to this one: its stream says busy, with a retry hint, as a
    // refusal at the door would have, and the edge tries the pools again. Counted with the refusals
    // (`displaced`), not with the finished requests: it never ran.
    for (const other of displaced) this.endQueued(other, 'displaced');
    this.reserved += reserved;
    this.metrics.reservedTokens.set(this.reserved);
    this.byId.set(request.id, gen);
    this.queue.push(gen);
    this.fairShares.queued(gen.tenant);
    this.tenantReserve.joined(gen.tenant);
    gen.tenantSlot = this.metrics.tenants.joined(gen.tenant, performance.now());
    this.preemptDue = true;
    this.metrics.waiting.set(this.queue.length);
    return gen;
  }

  /** Ends `gen` if it is still queued (a running one ends at the next step). */
  endQueued(gen: Generation<S>, reason: 'stop' | 'cancelled' | 'displaced'): void {
    const q = this.queue.indexOf(gen);
    if (q === -1) return;
    this.queue.splice(q, 1);
    this.metrics.waiting.set(this.queue.length);
    this.options.end(gen, reason);
  }

  /**
   * Gives free rows to queued generations, in their tenants' turn: each gets
   * its sequence (started from the prefix cache where it can be) and its
   * `start` event. One whose memory cannot be had ends; the rest go on. The
   * reserve's rows stay free while the next in turn has a row running and
   * another tenant shares the pool: FairShares puts a tenant with none
   * running first, so no one behind it could take them either. Not past
   * --max-queued, and not once closeReserve() was called.
   */
  admit(): void {
    const { metrics, tenantReserve } = this;
    const now = performance.now();
    let heldBack = 0;
    let kept = this.keptRows;
    while (this.active.length < this.limits.maxActive && this.queue.length > 0) {
      const next = this.fairShares.next(this.queue);
      const tenant = this.queue[next].tenant;
      const running = this.fairShares.runningOf(tenant);
      const free = this.limits.maxActive - this.active.length;
      // Held back only within --max-queued: a queue past it (generations queued before the reserve came into force,
      // or a burst within one step) gives the row, not an empty row and a longer queue than the pool allows.
      if (!tenantReserve.mayTake(tenant, running, free, now) && this.queue.length <= this.limits.maxQueued) {
        heldBack = free;
        break;
      }
      const tookHeldRow = running === 0 && kept > 0 && free <= tenantReserve.rows;
      const gen = this.queue.splice(next, 1)[0];
      this.preemptDue = true;
      let restored = 0;
      try {
        gen.cache = this.runner.newSequence(Math.min(this.runner.config.contextLength, gen.reservedTokens));
        if (gen.preemptions > 0 && gen.output.length > 0) restored = this.prefixes?.restoreContext(gen, gen.cache) ?? 0;
        else if (gen.preemptions > 0) {
          // Its prompt over again: the usage's cached prompt tokens stay its first admission's.
          const first = gen.cachedPromptTokens;
          gen.cachedPromptTokens = 0;
          this.prefixes?.restore(gen, gen.cache);
          restored = gen.cachedPromptTokens;
          gen.cachedPromptTokens = first;
        } else this.prefixes?.restore(gen, gen.cache);
      } catch (err) {
        // Its memory could not be had (the runtime's, or the prefix copy's): this request fails, not the pool.
        logLine(`pool: could not start generation ${gen.id}: ${(err as Error).message}`);
        this.options.endWithError(gen, `could not start the generation: ${(err as Error).message}`);
        continue;
      }
      if (tookHeldRow) {
        // Counted once its row is had, not for a generation whose memory could not be.
        metrics.tenantReserveAdmissions.inc();
        kept--;
      }
      if (gen.preemptions > 0) {
        // A preempted generation back: its stream started long ago (no second `start`, no second queue time); it only paused.
        const recomputed = Math.max(0, gen.lostPositions - restored);
        if (recomputed > 0) metrics.preemptionRecomputedTokens.inc(recomputed);
        this.active.push(gen);
        this.fairShares.started(gen.tenant);
        notifySink(gen, 'resumed');
        continue;
      }
      gen.startedAt = performance.now();
      metrics.queueTime.observe((gen.startedAt - gen.submittedAt) / 1000);
      metrics.tenants.admitted(gen.tenantSlot, (gen.startedAt - gen.submittedAt) / 1000);
      this.active.push(gen);
      this.fairShares.started(gen.tenant);
      try {
        gen.sink.send({ type: 'start', id: gen.id, queuedMs: Math.round(gen.startedAt - gen.submittedAt), cachedPromptTokens: gen.cachedPromptTokens });
      } catch (err) {
        // Its stream's fault (a sink that throws): this generation ends, not the step every row is in.
        logLine(`pool: could not start generation ${gen.id}'s stream: ${(err as Error).message}`);
        this.options.endWithError(gen, `could not start the stream: ${(err as Error).message}`);
      }
    }
    metrics.running.set(this.active.length);
    metrics.waiting.set(this.queue.length);
    const freeNow = this.limits.maxActive - this.active.length;
    this.keptRows = freeNow > tenantReserve.rows ? 0 : Math.min(freeNow, Math.max(kept, heldBack));
    metrics.tenantReserveHeldRows.set(heldBack);
  }

  /** Holds no row back from now on (tenant-reserve.ts, close), and preempts none: the pool drains or closes, and no new tenant can come. */
  closeReserve(): void {
    this.tenantReserve.close();
    this.keptRows = 0;
    this.preemptClosed = true;
  }

  /**
   * At a step boundary, after admit(): where the generation next in turn is a
   * named tenant's with no row running, every row is taken and that tenant
   * shares the pool, one generation of the tenant holding the most rows
   * gives its row up (preemption.ts); true when one did (admit() again then
   * gives the row). O(1) unless the queue or the rows changed since the last
   * check: then one pass over the queue (FairShares.next, as an admission),
   * and over the rows where a preemption is due.
   */
  preemptIfDue(): boolean {
    if (!this.preemptDue) return false;
    this.preemptDue = false;
    const { queue, active } = this;
    if (this.limits.preempt !== true || this.preemptClosed || queue.length === 0 || active.length < this.limits.maxActive) return false;
    const tenant = queue[this.fairShares.next(queue)].tenant;
    const fairShares = this.fairShares;
    if (tenant === '' || fairShares.runningOf(tenant) > 0 || !this.tenantReserve.sharedWith(tenant, performance.now())) return false;
    const victim = preemptionVictim(tenant, active, (t) => fairShares.runningOf(t));
    if (victim === -1) return false;
    this.preempt(victim);
    return true;
  }

  /**
   * Takes the row of `active[index]` at a step boundary: its cache is freed
   * (offered to the prefix cache first, where its resumption looks for it),
   * and it waits at the queue's front, so first in its tenant's turn, to
   * resume by recompute (Generation.requeueByRecompute). Its reservation,
   * id and stream stay; a cancel while it waits ends it as any queued one.
   */
  private preempt(index: number): void {
    const gen = this.active[index];
    this.active.splice(index, 1);
    this.fairShares.ended(gen.tenant);
    const cache = gen.cache;
    gen.cache = null;
    const computed = cache?.length ?? 0;
    try {
      this.prefixes?.unshare(gen);
      if (cache && !(this.prefixes !== null && this.prefixes.keep(gen, cache))) cache.release();
    } catch (err) {
      // Kept or not, its recompute gives the same tokens: only the memory's fate is in doubt.
      logLine(`pool: could not keep or free preempted generation ${gen.id}'s cache: ${(err as Error).message}`);
      try {
        cache?.release();
      } catch {
        // Its memory goes to the collector instead.
      }
    }
    gen.requeueByRecompute(computed);
    this.queue.unshift(gen);
    notifySink(gen, 'paused');
    this.metrics.preemptions.inc();
    this.metrics.tenants.preempted(gen.tenantSlot);
    this.metrics.running.set(this.active.length);
    this.metrics.waiting.set(this.queue.length);
  }

  /** A generation that ended: its row (if it had one), its id and its reservation are free. */
  release(gen: Generation<S>): void {
    this.preemptDue = true;
    const i = this.active.indexOf(gen);
    if (i !== -1) {
      this.active.splice(i, 1);
      this.fairShares.ended(gen.tenant);
    }
    if (this.byId.get(gen.id) === gen) {
      this.byId.delete(gen.id);
      const now = performance.now();
      this.tenantReserve.left(gen.tenant, now);
      this.metrics.tenants.left(gen.tenantSlot, now);
    }
    this.reserved -= gen.reservedTokens;
    this.metrics.reservedTokens.set(this.reserved);
  }

  /**
   * When room is likely: the running generation nearest its end finishes (its
   * tokens left, a step each at most, at the recent step time), clamped to
   * 0.1-30 s. A fixed 500 ms sent clients back long before any room was
   * made, and once generations ran for seconds, into retry storms.
   */
  retryAfterMs(): number {
    const contextLength = this.runner.config.contextLength;
    let fewestSteps = Infinity;
    for (const gen of this.active) {
      fewestSteps = Math.min(fewestSteps, gen.request.maxTokens - gen.output.length, contextLength + 1 - gen.sequenceLength);
    }
    const stepMs = this.stepMs.value;
    if (!Number.isFinite(fewestSteps) || stepMs === undefined) return 500;
    return Math.round(Math.min(30_000, Math.max(100, Math.max(1, fewestSteps) * stepMs)));
  }
}

/** Tells a preempted generation's sink it paused or resumed; a sink that throws is its stream's fault, logged, not the loop's. */
function notifySink(gen: Generation<RunnerSequence>, what: 'paused' | 'resumed'): void {
  try {
    gen.sink[what]?.();
  } catch (err) {
    logLine(`pool: could not tell generation ${gen.id}'s stream it ${what}: ${(err as Error).message}`);
  }
}

/** Refuses an edge trie naming a token the model does not have (see edgeTrieTokenOutside). */
export function checkTrieTokens(bytes: Uint8Array, vocabSize: number): void {
  const token = edgeTrieTokenOutside(bytes, vocabSize);
  if (token !== null) throw new AdmissionError('bad_request', `trie: token ${token} is outside the vocabulary (size ${vocabSize})`);
}

/** A 400 naming the first of `ids` outside the vocabulary. */
/** An allowed list the request's other masks empty (shared/allowed-ids-left.ts): a 400 now, not an error from the step that finds every logit masked. */
function checkSomethingAllowed(allowed: readonly number[], badWords: readonly (readonly number[])[], endIdsHeldBack: ReadonlySet<number> | null): void {
  if (allowedIdsLeft(allowed, badWords, endIdsHeldBack)) return;
  const why = endIdsHeldBack ? 'a one-token bad word or, before minTokens, an id that ends the generation' : 'a one-token bad word';
  throw new AdmissionError('bad_request', `allowedTokenIds leaves no token to generate: every one is ${why}`);
}

/**
 * A structured output that leaves the next token nothing, once the output so
 * far (a resumed generation's) and the request's other masks apply: a 400
 * now, not an error from the step that finds every logit masked.
 */
function checkTextAllowsSomething(
  text: TextMasks,
  field: StructuredKind,
  resumedOutput: ArrayLike<number>,
  allowed: readonly number[] | undefined,
  badWords: readonly (readonly number[])[],
  endIdsHeldBack: ReadonlySet<number> | null,
): void {
  let next: number[];
  let endsOnly = false;
  try {
    const state = text.stateAfter(resumedOutput);
    if (state === DEAD) {
      const what = field === 'choices' ? 'the start of no choice' : field === 'regex' ? 'the start of no match' : 'the start of no sentence of the grammar';
      throw new AdmissionError('bad_request', `${field}: the resumed output (resumedOutputTokens) is ${what}`);
    }
    // The language's next ids within the allowed list, then the same rule as an allowed list alone (allowedIdsLeft).
    const inList = allowed ? new Set(allowed) : null;
    next = Array.from(text.allowedAt(state)).filter((id) => inList === null || inList.has(id));
    endsOnly = text.endsOnlyAt(state);
  } catch (err) {
    if (err instanceof AutomatonLimitError) throw new AdmissionError('bad_request', `${field}: ${err.message}`);
    throw err;
  }
  // Where the language lets only the end follow, min_tokens yields to the output's end (logit-adjustments.ts): no refusal.
  if (allowedIdsLeft(next, badWords, endsOnly ? null : endIdsHeldBack)) return;
  // Only the masks this request sent are named: choices alone, with none of them, were told of allowedTokenIds they never set.
  const sent: string[] = [];
  if (allowed) sent.push('allowedTokenIds');
  if (badWords.length > 0) sent.push('badWords');
  if (endIdsHeldBack && !endsOnly) sent.push('minTokens (the end ids held back)');
  const what = field === 'choices' ? 'choices leave' : `${field} leaves`;
  const tokenizer = `none of the tokenizer's tokens prints what the ${field === 'choices' ? 'choices need' : `${field} needs`} next`;
  const why = sent.length === 0 ? `: ${tokenizer}` : ` once ${sent.length === 1 ? sent[0] : `${sent.slice(0, -1).join(', ')} and ${sent[sent.length - 1]}`} ${sent.length === 1 ? 'applies' : 'apply'}, or ${tokenizer}`;
  throw new AdmissionError('bad_request', `${what} no token to generate next${why}`);
}

/** The structured outputs a request sets, as their fields (one at most is served). */
function structuredKinds(request: GenerateRequest): StructuredKind[] {
  const kinds: StructuredKind[] = [];
  if (request.choices !== undefined) kinds.push('choices');
  if (request.regex !== undefined) kinds.push('regex');
  if (request.grammar !== undefined) kinds.push('grammar');
  return kinds;
}

function checkInVocabulary(field: string, ids: readonly number[], vocab: number): void {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] >= vocab) throw new AdmissionError('bad_request', `${field}[${i}] = ${ids[i]} is outside the vocabulary (size ${vocab})`);
  }
}
