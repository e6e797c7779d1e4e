/**
 * Iteration-level continuous batching with one tree-verification forward pass
 * per iteration:
 *
 *   admit queued → drop cancelled → apply pushed tries → draft + budget →
 *   ONE runner.step for every active row → accept per row → stream → retire
 *
 * A joining request's prefill is a row like any other (its prompt as a chain,
 * with a draft tree under its last token), so it never stalls the others'
 * decode. Finished or cancelled generations leave at once and release their
 * cache. The loop never waits for an edge: pushed tries are picked up at the
 * next iteration. Admission is bounded (active rows, queue, reserved tokens);
 * over the limit the caller gets a `busy` AdmissionError with a retry hint,
 * unless another tenant queued more than its share: then that tenant's
 * newest queued generation gives its place (admission.ts, fair-shares.ts).
 * What a row's pass accepted, and the events it emits: row-acceptance.ts.
 */
import { followsEdgeTries, MAX_PUSHED_TRIE_NODES, type GenerateRequest } from '../../shared/protocol';
import type { TreeBudget, BudgetRow } from '../budget/tree-budget';
import type { SpeculationGovernor } from '../budget/speculation-governor';
import type { BatchSizeCaps } from '../budget/batch-size-caps';
import type { PoolMetrics } from '../metrics/pool-metrics';
import type { CancelReason, FinishedGeneration, GenerationErrorCode } from '../metrics/request-log';
import type { BatchRunner, BatchStepResult, RunnerSequence } from './batch-runner';
import type { Generation, Drafter, GenerationSink } from './generation';
import { AdmissionError } from './admission-error';
import type { NextTokenTable } from '../../shared/drafting/next-token-table';
import { edgeTrieMalformation, edgeTrieNodeCount } from '../../shared/drafting/edge-trie';
import { AcceptanceRecord } from '../budget/acceptance-record';
import type { PrefixCache } from './prefix-cache';
import { PrefixReuse } from './prefix-reuse';
import { PassRecovery, type StepInput } from './pass-recovery';
import { RowDrafting, historyChainOf, type DraftingTally } from './row-drafting';
import { CHAIN_METHOD, StepPlanner, type StepPlan } from './step-plan';
import { Admission, checkTrieTokens, type SchedulerLimits } from './admission';
import { RowAcceptance, type StepCounts } from './row-acceptance';
import { logLine } from '../metrics/log-line';
import { EveryTokenMaskedError } from '../runtime/sampling';
import type { TokenTexts } from '../verify/token-texts';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { AutomatonLimitError } from '../../shared/structured/regex-automaton';
import { REQUEST_MASK_BOUNDS, type RequestMaskBounds } from '../verify/text-masks';

export type { SchedulerLimits } from './admission';

export interface SchedulerOptions<S extends RunnerSequence = RunnerSequence> {
  limits: SchedulerLimits;
  /** null = never speculate (every row is a plain decode row). */
  budget: TreeBudget | null;
  /** Measured on/off guard over the budget (per batch size); null = always follow the budget. */
  governor?: SpeculationGovernor | null;
  metrics: PoolMetrics;
  /**
   * Builds the per-request drafter; null for method 'off'. Throws
   * AdmissionError for a bad trie. `expectedLength`: the tokens the
   * generation may reach (prompt + output, within the context).
   */
  createDrafter: (request: GenerateRequest, expectedLength?: number) => Drafter | null;
  /** Called with prompt + output of finished generations that opted in. */
  onContribute?: (tokens: Int32Array) => void;
  /** Called once per generation as it ends, however it ends (the request log). */
  onFinished?: (summary: FinishedGeneration) => void;
  /** Most draft nodes per request per step. */
  maxTreeNodes?: number;
  /** What each token of the model's tokenizer prints (token-texts.ts), for requests with structured outputs; absent: they are refused. */
  tokenTexts?: TokenTexts | null;
  /**
   * The model's tokenizer, whose decoder the edge reads the output with: a
   * request's stop strings end its generation where the edge would find them
   * (stop-strings.ts). Absent: they are left to the edge, which cancels.
   */
  tokenizer?: Pick<Tokenizer, 'createDecoder'> | null;
  /**
   * What each request's regex or grammar masks may add to its automaton:
   * building work (NFA states visited) and DFA states; past either, the
   * generation ends bad_request. Absent: REQUEST_MASK_BOUNDS (10M steps,
   * ~0.12 s of CPU here, and 20,000 states). Tests set small ones, to reach
   * the bound in few tokens.
   */
  maskBounds?: Readonly<RequestMaskBounds>;
  /** The operator's caps on draft nodes per request by running batch size (within maxTreeNodes); none: maxTreeNodes at every size. */
  batchSizeCaps?: BatchSizeCaps | null;
  /**
   * The model's next-token table (the datastore's sidecar): `sssd` rows of
   * batches too wide for the fused drafter draft a short chain from it
   * instead (see step-plan.ts). null: wide batches decode plain.
   */
  chainTable?: NextTokenTable | null;
  /**
   * Finished generations' keys/values, for prompts that start with the same
   * tokens (prefix-cache.ts); used only with a runner that can copy a prefix.
   * null: every prompt is prefilled whole.
   */
  prefixCache?: PrefixCache<S> | null;
  /**
   * Most prompt tokens a step feeds, over all the prompts going in (chunked
   * prefill): a longer prompt, or several arriving together, go in over
   * several steps, so the rows decoding beside them wait for one chunk's
   * pass a step rather than the whole prompts' (480 tokens of stories260K:
   * 14 ms in one pass on the 2-core CPU, against ~1 ms a decode step at 8
   * rows). A prompt being scored (promptLogprobs) is chunked too, its
   * log-probabilities kept chunk by chunk. 0 or absent: every prompt in one
   * step.
   */
  prefillChunk?: number;
}

export interface SchedulerStats {
  active: number;
  queued: number;
  reservedTokens: number;
  steps: number;
  probScale: number;
  /** How long the forward pass now running has run (0: none is): one that runs for seconds has a device that hangs. */
  passRunningMs: number;
  /** Steps in a row whose pass failed for the whole batch (every generation in it ended); 0 once a pass goes through. */
  batchFailuresInARow: number;
  /** How long ago the latest of them was (null: none since the last pass that went through). */
  batchFailedMsAgo: number | null;
  /**
   * Whether those failures are not one tenant's alone: a pass of two rows or more, or rows of two tenants or more
   * among them. A row alone cannot tell its own fault from the device's, and one tenant's request failing alone
   * (resumed by the edge, retried: three passes) must not take the pool out of every edge's picks (review h103).
   */
  batchFailuresShared: boolean;
}

/** Ids of ended generations remembered, so a cancel that races a generation's end is told apart from one of an id never seen. */
export const RECENTLY_ENDED_IDS = 4096;

interface StepOutcome {
  batch: number;
  speculated: boolean;
  tokens: number;
  /** The batch's dominant drafting method; null when no row could draft. */
  method: string | null;
  /** Time spent building lazy drafters (first drafts) this step. */
  buildMs: number;
  /** Whether a row fed its prompt (a generation joining) this step. */
  prefill: boolean;
  /** The pass ran twice (its drafts dropped after a failure): its time says nothing of either arm. */
  rerun?: boolean;
}

export class Scheduler<S extends RunnerSequence = RunnerSequence> {
  /** Who gets a batch row: the queue, the limits, the busy answers, the tenants' turn. */
  private readonly admission: Admission<S>;
  /** The admission's running rows and queue (the same arrays): the loop's to run. */
  private readonly active: Generation<S>[];
  private readonly queue: Generation<S>[];
  /** What each row's pass accepted, and the events it emits. */
  private readonly rowAcceptance: RowAcceptance<S>;
  private readonly maxTreeNodes: number;
  private steps = 0;
  private running = false;
  private closed = false;
  private draining = false;
  private loopDone: Promise<void> = Promise.resolve();
  /** Whether the previous step drafted (see observeDraft in iterate). */
  private draftedLastStep = false;
  /** When the running forward pass started (performance.now()); 0 between passes. */
  private passStartedAt = 0;
  /** Consecutive steps whose pass failed for the whole batch, and when the latest did (stats()). */
  private batchFailuresInARow = 0;
  private batchFailedAt = 0;
  /** Since the last pass that went through: whether a failed one had two rows or more, and the failed rows' tenants (a batch's at most). */
  private multiRowBatchFailed = false;
  private readonly batchFailedTenants = new Set<string>();
  /** The last RECENTLY_ENDED_IDS ids to end, oldest first (a Set keeps insertion order). */
  private readonly recentlyEnded = new Set<string>();
  /** The prefix cache, where the runner can copy a prefix into a sequence (else none). */
  private readonly prefixes: PrefixReuse<S> | null;
  /** Running mean of drafter-building time per speculating cycle (see loop). */
  private buildMsPerCycle = 0;

  /** What each kind of draft has had accepted: the budget's estimates are corrected by it. */
  private readonly acceptance = new AcceptanceRecord();

  // Per-step scratch, grown with the batch.
  private readonly budgetRowPool: BudgetRow[] = [];
  private readonly budgetRows: BudgetRow[] = [];
  private allocation = new Int32Array(64);
  private inputs: StepInput<S>[] = [];
  /** Drafting faults recovered from (dropDrafts, dropDrafter): the log tells of the first. */
  private draftFailureCount = 0;
  /** The step's pass, kept going through the runtime's failures. */
  private readonly passes: PassRecovery<S>;
  /** How each row drafts, once a step's plan is made. */
  private readonly drafting: RowDrafting;
  /** Decides each step whether and how the batch drafts. */
  private readonly planner: StepPlanner;
  /** The step's plan and what its drafting did: one object each, reused every step. */
  private readonly stepPlan: StepPlan = { n: 0, cap: 0, userCap: 0, chains: false, lateChains: false, nearlyFree: false, method: null, maxPast: 0, speculate: false };
  /** The rows of the step running now (null between steps): the ones a step that fails outright ends. */
  private stepRows: Generation<S>[] | null = null;
  private readonly draftingTally: DraftingTally = { draftedRows: 0, buildMs: 0, chained: 0, chainMs: 0, unpaid: 0, resting: 0, probes: 0 };
  private readonly stepCounts: StepCounts = { generated: 0, promptTokens: 0, drafts: 0, draftTokens: 0, accepted: 0 };

  constructor(
    readonly runner: BatchRunner<S>,
    private readonly options: SchedulerOptions<S>,
  ) {
    // Until the first request the pool is idle too: the phases then add up to its uptime.
    options.metrics.startIdle(performance.now());
    this.maxTreeNodes = options.maxTreeNodes ?? 64;
    this.prefixes = options.prefixCache && PrefixReuse.usable(runner) ? new PrefixReuse(options.prefixCache, runner, options.metrics) : null;
    this.admission = new Admission({
      runner,
      limits: options.limits,
      metrics: options.metrics,
      createDrafter: options.createDrafter,
      prefixes: this.prefixes,
      maxTreeNodes: this.maxTreeNodes,
      tokenTexts: options.tokenTexts ?? null,
      tokenizer: options.tokenizer ?? null,
      maskBounds: options.maskBounds ?? REQUEST_MASK_BOUNDS,
      end: (gen, reason) => this.finish(gen, reason),
      endWithError: (gen, message) => this.endWithError(gen, message),
    });
    this.active = this.admission.active;
    this.queue = this.admission.queue;
    this.rowAcceptance = new RowAcceptance({
      runner,
      maxTreeNodes: this.maxTreeNodes,
      metrics: options.metrics,
      acceptance: this.acceptance,
      prefixes: this.prefixes,
      finish: (gen, reason) => this.finish(gen, reason),
      dropDrafter: (gen, err) => this.dropDrafter(gen, err),
    });
    this.passes = new PassRecovery(runner, options.metrics);
    this.drafting = new RowDrafting({
      maxTreeNodes: this.maxTreeNodes,
      contextLength: runner.config.contextLength,
      budget: options.budget,
      chainTable: options.chainTable ?? null,
      acceptance: this.acceptance,
      dropDrafter: (gen, err) => this.dropDrafter(gen, err),
    });
    this.planner = new StepPlanner({
      budget: options.budget,
      governor: options.governor ?? null,
      chainTable: options.chainTable ?? null,
      batchSizeCaps: options.batchSizeCaps ?? null,
      maxTreeNodes: this.maxTreeNodes,
      drafting: this.drafting,
    });
  }

  get contextLength(): number {
    return this.runner.config.contextLength;
  }

  stats(): SchedulerStats {
    return {
      active: this.active.length,
      queued: this.queue.length,
      reservedTokens: this.admission.reservedTokens,
      steps: this.steps,
      probScale: this.probScale(),
      passRunningMs: this.passStartedAt === 0 ? 0 : performance.now() - this.passStartedAt,
      batchFailuresInARow: this.batchFailuresInARow,
      batchFailedMsAgo: this.batchFailuresInARow === 0 ? null : performance.now() - this.batchFailedAt,
      batchFailuresShared: this.multiRowBatchFailed || this.batchFailedTenants.size > 1,
    };
  }

  /** How much of what the drafters of `method` predict is accepted (AcceptanceRecord.probScale). */
  probScale(method = 'sssd'): number {
    return this.acceptance.probScale(method);
  }

  /** Generations ended by a fault in their acceptance (the first is logged with its stack). */
  private acceptFaults = 0;

  /**
   * Validates and enqueues a generation; its events go to `sink`. Throws
   * AdmissionError ('bad_request' or 'busy') without side effects; where it
   * takes another tenant's queued place, that generation ends (displace).
   */
  submit(request: GenerateRequest, sink: GenerationSink): Generation<S> {
    if (this.closed || this.draining) {
      // Counted the same: shutting down after a drain or without one.
      this.options.metrics.rejected.inc({ reason: 'draining' });
      if (this.closed) throw new AdmissionError('busy', 'the pool is shutting down', 1000);
      throw new AdmissionError('busy', 'the pool is draining to shut down; retry on another pool', 1000);
    }
    const gen = this.admission.enqueue(request, sink);
    this.kick();
    return gen;
  }

  /**
   * Cancels a queued or running generation; false when unknown. `atStop`: the
   * edge ended it at a stop string, so it finished (`stop` in the metrics and
   * the request log), it was not cut off. `by`: where the cancel came from,
   * for the request log.
   */
  cancel(id: string, atStop = false, by: CancelReason = 'delete'): boolean {
    const gen = this.admission.byId.get(id);
    if (!gen || gen.finished) return false;
    // The first word stands: an edge's stop, then its stream closing, is still a stop.
    if (gen.cancelled) return true;
    gen.cancelled = true;
    gen.cancelledBy = by;
    // A stop string is found in output: with none yet (queued, or in its prefill) the generation is cut off, not stopped.
    gen.stoppedByEdge = atStop && gen.output.length > 0;
    this.admission.endQueued(gen, gen.cancelReason);
    // Running: dropped at the start of the next iteration (within one step).
    return true;
  }

  /**
   * Whether a trie pushed for `id` would be read: 'follows' for a queued or
   * running generation that drafts from edge tries, 'ignores' for one that
   * does not (its method, or a drafter dropped after it threw), null for no
   * such generation (any more). A trie an ignoring one is pushed need not
   * even be decoded.
   */
  trieReader(id: string): 'follows' | 'ignores' | null {
    const gen = this.admission.byId.get(id);
    if (!gen || gen.finished) return null;
    return gen.drafter && followsEdgeTries(gen.request.speculation) ? 'follows' : 'ignores';
  }

  /**
   * A fresh edge trie for a running generation; applied at the next
   * iteration (a later push before it replaces it). False: no such
   * generation (any more). A generation that does not read tries
   * (trieReader) takes it unread. Throws a bad_request AdmissionError for a
   * trie checkPushedTrie refuses.
   */
  pushTrie(id: string, bytes: Uint8Array, outputLength: number): boolean {
    const reader = this.trieReader(id);
    if (reader === null) return false;
    if (reader === 'ignores') return true;
    const gen = this.admission.byId.get(id)!;
    this.checkPushedTrie(bytes, outputLength, gen.output.length);
    gen.incomingTrie = { bytes, outputLength };
    return true;
  }

  /**
   * Throws AdmissionError (a 400) for a pushed trie no generation can take:
   * malformed (a shipped one is dropped instead, the request being valid
   * without it; a pushed one is refused, so the edge hears of it rather than
   * a 202), over MAX_PUSHED_TRIE_NODES nodes, naming a token outside the
   * vocabulary, or for output past the `written` tokens (it could never be
   * followed; Infinity where they are not known, an ended generation's).
   */
  checkPushedTrie(bytes: Uint8Array, outputLength: number, written: number): void {
    const problem = edgeTrieMalformation(bytes);
    if (problem !== null) throw new AdmissionError('bad_request', `trie: ${problem}`);
    const nodes = edgeTrieNodeCount(bytes)!;
    if (nodes > MAX_PUSHED_TRIE_NODES) throw new AdmissionError('bad_request', `trie: ${nodes} nodes; a pushed trie holds at most ${MAX_PUSHED_TRIE_NODES}`);
    checkTrieTokens(bytes, this.runner.config.vocabSize);
    if (outputLength > written) throw new AdmissionError('bad_request', `outputLength ${outputLength} is past the generation's output (${written} tokens so far)`);
  }

  has(id: string): boolean {
    return this.admission.byId.has(id);
  }

  /** Whether `id` is among the last RECENTLY_ENDED_IDS generations to end (however they ended). */
  endedRecently(id: string): boolean {
    return this.recentlyEnded.has(id);
  }

  /**
   * Stops admitting (new submits are refused as busy) and resolves once every
   * generation already admitted, queued ones included, has finished: a
   * restart that does not cut anyone's stream. close() after it (or instead,
   * when the wait runs out) cancels what is left.
   */
  async drain(): Promise<void> {
    this.draining = true;
    // No new tenant can come: rows kept for one would only slow the drain (review h208).
    this.admission.closeReserve();
    // The loop ends by itself once nothing is left; nothing new can start it.
    while (this.running) await this.loopDone;
  }

  /** Whether drain() has been called: the pool refuses new generations. */
  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Forgets the prefix cache's kept sequences: all, or one salt's. Null when
   * the pool has no prefix cache.
   */
  clearPrefixCache(salt?: string): { sequences: number; bytes: number } | null {
    if (!this.prefixes) return null;
    let oldestLive = this.prefixes.epoch;
    for (const gen of this.active) oldestLive = Math.min(oldestLive, gen.prefixEpoch);
    for (const gen of this.queue) oldestLive = Math.min(oldestLive, gen.prefixEpoch);
    return this.prefixes.clear(salt, oldestLive);
  }

  /** Stops admitting, cancels everything, waits for the loop to end. */
  async close(): Promise<void> {
    this.closed = true;
    this.admission.closeReserve();
    for (const gen of [...this.queue, ...this.active]) this.cancel(gen.id, false, 'shutdown');
    this.kick();
    await this.loopDone;
    this.prefixes?.clear();
    this.options.metrics.prefixCacheBytes.set(0);
  }

  /** Starts the loop if it is idle (it ends itself when nothing is left to run). */
  private kick(): void {
    if (!this.running) {
      this.options.metrics.endIdle(performance.now());
      this.running = true;
      this.loopDone = this.loop();
    }
  }

  private async loop(): Promise<void> {
    const { metrics } = this.options;
    // Everything from the end of a step (or the loop's start) to the next
    // step's start, or to going idle, is the `between` phase: with the step's
    // own phases and `idle`, the pool's whole time is accounted for.
    let since = performance.now();
    for (;;) {
      try {
        this.admission.admit();
        this.reapCancelled();
        // A tenant with no row running, every row taken: one row is freed for it and given now (preemption.ts).
        if (this.admission.preemptIfDue()) this.admission.admit();
      } catch (err) {
        // Nothing here may end the loop: a rejected loopDone would take the process down, every stream with it.
        this.failActive(err);
      }
      if (this.active.length === 0 && (this.closed || this.queue.length === 0)) {
        // Cleared in the same synchronous turn as the check, so kick() never misses a submit.
        this.running = false;
        const now = performance.now();
        metrics.phase.between.inc((now - since) / 1000);
        metrics.startIdle(now);
        return;
      }
      if (this.active.length === 0) continue;
      const t0 = performance.now();
      metrics.phase.between.inc((t0 - since) / 1000);
      let outcome: StepOutcome | null = null;
      try {
        outcome = await this.iterate();
      } catch (err) {
        // The step's own rows: a prompt chunked prefill held out of it was in no failing pass.
        this.failActive(err, this.stepRows);
      }
      this.stepRows = null;
      const t1 = performance.now();
      since = t1;
      metrics.stepSeconds.observe((t1 - t0) / 1000);
      this.admission.stepMs.add(t1 - t0);
      // Let HTTP handlers (new requests, cancels, tries) run between steps;
      // the step's events are written to their sockets here too.
      await new Promise<void>((resolve) => setImmediate(resolve));
      // The governor judges whole cycles: streaming and request handling
      // included. Building a request's drafter (once, at its first draft) is
      // charged to speculating cycles at its running mean rather than in one
      // lump: a 1-2 ms build in one cycle of a single row made speculation look
      // slower than plain decoding and switched it off for dozens of steps.
      // Cycles where a generation joins are left out: its prompt dominates
      // them whichever arm runs, and since joins follow finishes, they fell
      // unevenly on the arms and on the batch-size buckets (a batch back at
      // full size is one where a row has just joined), which made plain
      // decoding look up to 2x slower than it is.
      // Plain cycles count whoever's rows they are (batches of 'off' rows too):
      // plain decoding's rate is the pool's, one arm for every method.
      if (outcome && !outcome.prefill && outcome.rerun !== true) {
        let ms = performance.now() - t0;
        if (outcome.speculated) {
          this.buildMsPerCycle = this.buildMsPerCycle * 0.98 + outcome.buildMs * 0.02;
          ms += this.buildMsPerCycle - outcome.buildMs;
        }
        try {
          this.options.governor?.record(outcome.batch, outcome.speculated, outcome.tokens, ms, outcome.method ?? 'off');
        } catch (err) {
          logLine(`pool: the speculation governor failed to record a step: ${(err as Error).message}`);
        }
      }
    }
  }

  private reapCancelled(): void {
    for (let i = this.active.length - 1; i >= 0; i--) {
      const gen = this.active[i];
      if (gen.cancelled) this.finish(gen, gen.cancelReason);
    }
  }

  private async iterate(): Promise<StepOutcome> {
    const started = performance.now();
    const batch = this.planFeeds(this.active.slice());
    this.stepRows = batch;
    const n = batch.length;
    const budget = this.options.budget;
    const step = this.planner.plan(batch, this.stepPlan);
    const { cap, chains, speculate, method, maxPast } = step;
    if (this.allocation.length < n) this.allocation = new Int32Array(n * 2);
    // The budget reads this step's rows (their count too) from budgetRows:
    // pooled row objects, no per-step allocation.
    while (this.budgetRowPool.length < n) this.budgetRowPool.push({ chainLength: 1, available: 0, probs: null, scale: 1 });
    if (this.budgetRows.length !== n) {
      this.budgetRows.length = 0;
      for (let r = 0; r < n; r++) this.budgetRows.push(this.budgetRowPool[r]);
    }

    // 1. Draft.
    const tally = this.draftingTally;
    tally.draftedRows = 0;
    tally.buildMs = 0;
    tally.chained = 0;
    tally.chainMs = 0;
    tally.unpaid = 0;
    tally.resting = 0;
    tally.probes = 0;
    for (let r = 0; r < n; r++) {
      const gen = batch[r];
      gen.chainStep = false;
      if (gen.incomingTrie && gen.drafter) {
        gen.drafter.pushEdgeTrie(gen.incomingTrie.bytes, gen.incomingTrie.outputLength);
        if (gen.noise === null) gen.historyChain = historyChainOf(gen.incomingTrie.bytes, gen.output, gen.incomingTrie.outputLength);
        gen.trieExhaustedSent = false;
        gen.hasEdgeTrie = true;
        gen.edgeAcceptedSinceTrie = 0;
      }
      gen.incomingTrie = null;
      this.drafting.draft(gen, this.budgetRows[r], step, tally);
    }

    // 2. Budget.
    const alloc = this.allocation;
    if (budget && speculate) budget.allocate(this.budgetRows, alloc, maxPast, method!);
    else if (budget && tally.chained > 0) budget.allocate(this.budgetRows, alloc, maxPast, CHAIN_METHOD);
    else alloc.fill(0, 0, n);

    // 3. Build rows: chain (pending tokens), then the allocated tree prefix under the chain's last token.
    const inputs = this.inputs;
    inputs.length = n;
    let totalTokens = 0;
    let maxTokens = 0;
    let prefill = false;
    for (let r = 0; r < n; r++) {
      const gen = batch[r];
      if (gen.feedLength > 1) prefill = true;
      const input = this.buildRow(gen, alloc[r]);
      const len = input.row.tokens.length;
      totalTokens += len;
      if (len > maxTokens) maxTokens = len;
      inputs[r] = input;
    }

    // 4. One forward pass for the whole batch.
    const { metrics } = this.options;
    const drafted = performance.now();
    metrics.phase.draft.inc((drafted - started) / 1000);
    if (tally.unpaid > 0) metrics.draftSkipsOf.unpaid.inc(tally.unpaid);
    if (tally.resting > 0) metrics.draftSkipsOf.resting.inc(tally.resting);
    if (tally.probes > 0) metrics.draftProbes.inc(tally.probes);
    // Only steady drafting is learnt from: a step that drafts after steps that
    // did not finds the drafters' memory cold and cost ~2.5x as much per row
    // (0.1 ms vs 0.04), and learning that kept the budget from drafting at
    // batch 4-7, where drafting was then only ever done cold, now and then.
    // A cold draft is still learnt from when it came in under the estimate:
    // cold costs more than steady, so the steady cost is lower still. Without
    // it, an estimate set too high kept rows from drafting, and only steady
    // drafting could lower it (a run at concurrency 4 stayed at 1.07x with the
    // estimate at 1.7 ms per row; drafting steadily costs ~0.06).
    if (cap > 0 && method) budget?.observeDraft(tally.draftedRows, drafted - started - tally.buildMs - tally.chainMs, method, !this.draftedLastStep);
    this.draftedLastStep = cap > 0 && tally.draftedRows > 0;
    metrics.batchSize.observe(n);
    metrics.stepTokens.observe(totalTokens);
    metrics.iterationTokens.observe(totalTokens);
    let result: BatchStepResult;
    let rerun = false;
    this.passStartedAt = drafted;
    try {
      try {
        result = await this.passes.run(inputs, n);
      } catch (err) {
        // Draft tokens are the pool's guesses: a pass that fails with them
        // (a drafting bug, a token the model does not have) runs again
        // without them rather than fail every generation in the batch.
        rerun = true;
        let failure = err;
        if (this.dropDrafts(batch, inputs, n)) {
          try {
            result = await this.passes.run(inputs, n);
            // Counted only where the drafts were the fault: a pass that fails
            // without them too (the device's memory, a bad sequence) is not.
            this.draftingFault('pass', 'a pass with drafts failed and ran again without them', err);
          } catch (plainErr) {
            failure = plainErr;
          }
        }
        // A plain pass that fails: the rows that fail alone end, the rest go on.
        result ??= await this.passes.isolate(inputs, n, failure, this.steps, (r, message) => this.endWithError(batch[r], message));
      }
      if (this.batchFailuresInARow > 0) {
        this.batchFailuresInARow = 0;
        this.multiRowBatchFailed = false;
        this.batchFailedTenants.clear();
      }
    } catch (err) {
      // Nothing of the batch went through (pass_failures{result="batch"}): /healthz says `failing` after a few in a
      // row that are not one tenant's alone (stats' batchFailuresShared).
      this.batchFailuresInARow++;
      this.batchFailedAt = performance.now();
      if (n > 1) this.multiRowBatchFailed = true;
      for (const gen of batch) this.batchFailedTenants.add(gen.tenant);
      throw err;
    } finally {
      // /healthz reads how long a pass has run (a device that hangs shows there).
      this.passStartedAt = 0;
    }
    const forwarded = performance.now();
    metrics.phase.forward.inc((forwarded - drafted) / 1000);
    this.steps++;

    // 5. Accept, commit, stream, retire.
    // Counters are bumped once per step, not per row.
    const counts = this.stepCounts;
    counts.generated = 0;
    counts.promptTokens = 0;
    counts.drafts = 0;
    counts.draftTokens = 0;
    counts.accepted = 0;
    // One clock reading for the step's token events: they leave together, when the step ends.
    const emittedAt = performance.now();
    for (let r = 0; r < n; r++) {
      const gen = batch[r];
      if (gen.finished) continue;
      try {
        this.rowAcceptance.accept(gen, r, inputs[r].row, result, emittedAt, counts);
      } catch (err) {
        // One row's fault (acceptance, its commit, its stream) ends its own
        // generation, not the batch's.
        if (err instanceof AutomatonLimitError) this.options.metrics.automatonLimits.inc();
        if (err instanceof EveryTokenMaskedError || err instanceof AutomatonLimitError) {
          // The request's own masks left no token, or its regex grew past the states a pool keeps: a bad request,
          // which another pool would refuse as well.
          this.endWithError(gen, err.message, 'bad_request');
          continue;
        }
        // The first with its stack; after it a line each (each ends a generation).
        const first = this.acceptFaults++ === 0;
        logLine(`pool: generation ${gen.id} failed in acceptance: ${err instanceof Error ? ((first ? err.stack : undefined) ?? err.message) : String(err)}`);
        this.endWithError(gen, `generation failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (counts.promptTokens > 0) metrics.promptTokens.inc(counts.promptTokens);
    if (counts.drafts > 0) {
      metrics.speculatingStepsOf[chains ? 'chain' : 'tree'].inc();
      metrics.numDrafts.inc(counts.drafts);
      metrics.numDraftTokens.inc(counts.draftTokens);
      if (counts.accepted > 0) metrics.numAcceptedTokens.inc(counts.accepted);
    }
    const { generated } = counts;
    const end = performance.now();
    metrics.endStep(end, generated);
    if (!rerun) budget?.observeStep(n, maxTokens, totalTokens, maxPast, end - drafted);
    // The step's bookkeeping above is acceptance's too (the phases leave no gap).
    metrics.phase.accept.inc((performance.now() - forwarded) / 1000);
    const { buildMs } = tally;
    if (chains && tally.chained > 0) return { batch: n, speculated: true, tokens: generated, method: CHAIN_METHOD, buildMs, prefill, rerun };
    return { batch: n, speculated: speculate, tokens: generated, method, buildMs, prefill, rerun };
  }

  /**
   * A row's tokens for the pass: its pending tokens as a chain, then the
   * first `allocated` nodes of its tree under the chain's last token (nodes
   * deeper than its draft room, or under a node left out, are left out too).
   * Also notes how much of its draft went out, which the resting rule and
   * the next draft's size go by.
   */
  private buildRow(gen: Generation<S>, allocated: number): StepInput<S> {
    const chain = gen.feedLength;
    const tokens = gen.rowTokens;
    const parents = gen.rowParents;
    for (let i = 0; i < chain; i++) {
      tokens[i] = gen.pending[i];
      parents[i] = i - 1;
      gen.rowToTree[i] = -1;
    }
    let len = chain;
    const tree = gen.tree;
    const take = tree ? Math.min(allocated, tree.size - 1) : 0;
    const maxDepth = this.drafting.draftRoom(gen);
    if (tree) {
      gen.treeToRow[0] = chain - 1;
      for (let node = 1; node <= take; node++) {
        const parentRow = gen.treeToRow[tree.parents[node]];
        if (parentRow === -1 || tree.depths[node] > maxDepth) {
          gen.treeToRow[node] = -1;
          continue;
        }
        tokens[len] = tree.tokens[node];
        parents[len] = parentRow;
        gen.rowToTree[len] = node;
        gen.treeToRow[node] = len;
        len++;
      }
    }
    gen.rowLength = len;
    gen.treeUsed = len - chain;
    if (tree && tree.size > 1 && !gen.chainStep) {
      gen.refusedSteps = gen.treeUsed === 0 ? gen.refusedSteps + 1 : 0;
      // A probe the budget sent stands for the row as it is now, not the record that stopped it (RowDrafting.noteSkip);
      // one it sent nothing of says nothing.
      if (gen.probing) {
        if (gen.treeUsed > 0) gen.sentPerDraft = gen.treeUsed;
      } else gen.sentPerDraft = gen.sentPerDraft < 0 ? gen.treeUsed : gen.sentPerDraft * 0.7 + gen.treeUsed * 0.3;
    }
    return { cache: gen.cache!, row: { tokens: tokens.subarray(0, len), parents: parents.subarray(0, len) } };
  }

  /**
   * A drafter that threw: its generation goes on without speculation (its
   * output is the same, only plainer), the rest of the batch untouched.
   */
  private dropDrafter(gen: Generation<RunnerSequence>, err: unknown): void {
    const drafter = gen.drafter;
    gen.drafter = null;
    gen.historyChain = null;
    gen.tree = null;
    try {
      drafter?.release?.();
    } catch {
      // Its memory goes to the collector instead.
    }
    this.draftingFault('drafter', `the drafter of '${gen.id}' failed; it goes on without speculation`, err);
  }

  /** Counts a drafting fault the pool recovered from; logs the first in full, then one line a thousand (a recurring fault must not flood the log). */
  private draftingFault(kind: 'pass' | 'drafter', what: string, err: unknown): void {
    this.options.metrics.draftFailures.inc({ kind });
    const count = ++this.draftFailureCount;
    if (count === 1) logLine(`pool: ${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    else if (count % 1000 === 0) logLine(`pool: ${count} drafting faults recovered from (see sssd_pool_draft_failures_total); the latest: ${what}`);
  }

  /**
   * Cuts every row of this step back to its pending tokens (no draft);
   * false when no row had drafts (nothing to drop).
   */
  private dropDrafts(batch: readonly Generation<S>[], inputs: StepInput<S>[], n: number): boolean {
    let dropped = false;
    for (let r = 0; r < n; r++) {
      const gen = batch[r];
      if (gen.treeUsed === 0) continue;
      const chain = gen.feedLength;
      gen.rowLength = chain;
      gen.treeUsed = 0;
      inputs[r] = { cache: inputs[r].cache, row: { tokens: gen.rowTokens.subarray(0, chain), parents: gen.rowParents.subarray(0, chain) } };
      dropped = true;
    }
    return dropped;
  }

  /**
   * Sets each row's feedLength for this step and returns the rows that feed
   * anything. Decode rows feed their pending token; prompts share
   * prefillChunk tokens a step, oldest first (a prompt being scored too). A
   * prompt left nothing this step waits for the next; the oldest
   * always gets its share, so every prompt gets in. Without prefillChunk,
   * every row feeds all it has pending.
   */
  private planFeeds(rows: Generation<S>[]): Generation<S>[] {
    const chunk = this.options.prefillChunk ?? 0;
    let left = chunk;
    let kept = 0;
    for (const gen of rows) {
      let feed = gen.pendingLength;
      if (chunk > 0 && feed > 1) {
        // A scored prompt too: each chunk's log-probabilities are kept until the last (scorePromptChunk).
        feed = Math.min(feed, left);
        left -= feed;
      }
      gen.feedLength = feed;
      if (feed > 0) rows[kept++] = gen;
    }
    rows.length = kept;
    return rows;
  }

  private finish(gen: Generation<S>, reason: 'stop' | 'length' | 'context_length' | 'cancelled' | 'error' | 'displaced'): void {
    if (gen.finished) return;
    gen.finished = true;
    this.admission.release(gen);
    this.recentlyEnded.delete(gen.id);
    this.recentlyEnded.add(gen.id);
    if (this.recentlyEnded.size > RECENTLY_ENDED_IDS) this.recentlyEnded.delete(this.recentlyEnded.values().next().value!);
    const cache = gen.cache;
    gen.cache = null;
    // What follows frees memory, and may fail for want of it (the prefix cache's compacting copy):
    // the stream is ended all the same, below.
    try {
      this.prefixes?.unshare(gen);
      // A cancelled generation's committed positions are as good as a finished one's (an edge cancels at a
      // stop string); a failed step's may not be.
      if (cache && !(reason !== 'error' && this.prefixes !== null && this.prefixes.keep(gen, cache))) cache.release();
    } catch (err) {
      logLine(`pool: could not keep or free generation ${gen.id}'s cache: ${(err as Error).message}`);
      if (cache) releaseQuietly(cache);
    }
    if (gen.drafter?.release) releaseQuietly(gen.drafter);
    const { metrics } = this.options;
    if (reason === 'displaced') {
      metrics.rejected.inc({ reason: 'displaced' });
      metrics.tenants.refused(gen.tenantSlot, 'displaced');
    } else {
      metrics.recordFinished(reason, gen.tenantSlot);
    }
    const summary = gen.finishedSummary(reason);
    if (reason === 'stop' || reason === 'length' || reason === 'context_length') metrics.recordCompleted(summary);
    metrics.running.set(this.active.length);
    // A sink that throws (a broken connection) must not take the loop down with it.
    try {
      if (reason === 'displaced') {
        const message = "the pool is at capacity and this generation's place in the queue went to another tenant's, which had fewer queued; retry after the time given";
        gen.sink.send({ type: 'error', code: 'busy', message, retryAfterMs: this.admission.retryAfterMs() });
      } else if (reason !== 'error') {
        gen.sink.send(gen.doneEvent(reason));
      }
      gen.sink.end();
    } catch (err) {
      logLine(`pool: could not end generation ${gen.id}: ${(err as Error).message}`);
    }
    if (gen.request.contributeToDatastore && (reason === 'stop' || reason === 'length') && this.options.onContribute) {
      // The generation is over and answered: a datastore that cannot take its text (out of memory) must not end the others.
      try {
        this.options.onContribute(gen.contextTokens());
      } catch (err) {
        logLine(`pool: could not add generation ${gen.id}'s output to the datastore: ${(err as Error).message}`);
      }
    }
    if (this.options.onFinished) {
      try {
        this.options.onFinished(summary);
      } catch (err) {
        logLine(`pool: request log failed for ${gen.id}: ${(err as Error).message}`);
      }
    }
  }

  /** Ends `rows` (default: every active generation) with the error of a step that failed. */
  private failActive(err: unknown, rows: readonly Generation<S>[] | null = null): void {
    const message = err instanceof Error ? err.message : String(err);
    logLine(`pool: step failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
    for (const gen of (rows ?? this.active).slice()) this.endWithError(gen, `verification step failed: ${message}`);
  }

  /** Ends a generation with an error event, `internal` unless the request is at fault, counted by its code (a sink that throws cannot stop it ending). */
  private endWithError(gen: Generation<S>, message: string, code: GenerationErrorCode = 'internal'): void {
    if (gen.finished) return;
    gen.error = { code, message };
    this.options.metrics.generationErrors.inc({ code });
    try {
      gen.sink.send({ type: 'error', code, message });
    } catch {
      // finish() ends the stream all the same.
    }
    this.finish(gen, 'error');
  }
}

/** Frees what can be freed, once: a second release or a failing one is logged, not thrown. */
function releaseQuietly(owner: { release?: () => void }): void {
  try {
    owner.release?.();
  } catch (err) {
    logLine(`pool: release failed: ${(err as Error).message}`);
  }
}
