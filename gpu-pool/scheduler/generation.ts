/**
 * One generation's state inside the pool: its request, where its tokens are
 * (cache vs. pending chain), its drafter, its RNG, its usage figures, and the
 * sink its events go to. Buffers are sized once at submission.
 */
import type { FinishReason, GenerateRequest, PoolEvent, SpeculationUsage } from '../../shared/protocol';
import type { DraftTree } from '../../shared/drafting/draft-tree';
import type { EdgeTrieFollower } from '../../shared/drafting/edge-trie';
import type { ChainCoupling } from '../../shared/drafting/table-chain';
import type { DepthCalibration } from '../budget/depth-calibration';
import type { GumbelNoise } from '../../shared/sampling/gumbel-noise';
import type { RunnerSequence } from './batch-runner';
import type { LogitAdjustments } from '../verify/logit-adjustments';
import type { TextMasks } from '../verify/text-masks';
import type { StopStrings } from './stop-strings';
import type { SharedPrefix } from './prefix-cache';
import type { CancelReason, FinishedGeneration, GenerationErrorCode } from '../metrics/request-log';

/** Where events go (the HTTP response, or a test's collector). */
export interface GenerationSink {
  send(event: PoolEvent): void;
  /** The generation is over; no more events. */
  end(): void;
  /**
   * Its row was taken (preemption.ts): it waits in the queue, its next
   * events after the pause. The pool's HTTP stream sends `queued` events
   * meanwhile, as before its start, so a reader that takes a silent pool
   * for a hung one waits (the edge's stall watch).
   */
  paused?(): void;
  /** It has a row again (after paused). */
  resumed?(): void;
}

/** The per-request drafter (engineer B2's RequestDrafter, structurally). */
export interface Drafter {
  draft(budget: number): DraftTree;
  accept(tokens: ArrayLike<number>): void;
  pushEdgeTrie(trie: Uint8Array, outputLength: number): void;
  readonly edgeTrieExhausted: boolean;
  /**
   * The same as of every token emitted so far (a lazy drafter takes its
   * queued ones in for it, which its next draft would do): for the edge's
   * hint, which came a step late from the state of the last draft.
   */
  edgeTrieExhaustedNow?(): boolean;
  /** The edge trie shipped with the request, decoded (null: none). */
  readonly shippedTrie?: Uint8Array | null;
  /** False while a lazy drafter has not built its state yet (its first draft() builds it). */
  readonly built?: boolean;
  /**
   * Tokens the drafter has yet to take in: emitted tokens a lazy drafter
   * queued, or a long prompt not indexed yet. A draft() with many of them
   * costs more than a steady one (the scheduler keeps it out of the budget's
   * drafting cost).
   */
  readonly queuedTokens?: number;
  /** The generation is over: pooled memory (the context trie's arrays) goes back; not used after. */
  release?(): void;
}

export class Generation<S extends RunnerSequence = RunnerSequence> {
  readonly promptIds: Int32Array;
  readonly output: number[] = [];
  /** Tokens fed at the next step (not yet in the cache): the prompt, then the last emitted token. */
  pending: Int32Array;
  pendingLength: number;
  /** Of the pending tokens, those fed this step: all, or a chunk of a long prompt (Scheduler.planFeeds). */
  feedLength = 0;
  cache: S | null = null;
  cancelled = false;
  /** Cancelled by an edge that found a stop string in the output: the generation ended as `stop`, not cut off. */
  stoppedByEdge = false;
  /** Where its (first) cancel came from, for the request log; null: not cancelled. */
  cancelledBy: CancelReason | null = null;
  /** The error its stream ended with (Scheduler.endWithError); null: none. */
  error: { code: GenerationErrorCode; message: string } | null = null;

  /** How a cancelled generation ends: at the edge's stop string, or cut off. */
  get cancelReason(): 'stop' | 'cancelled' {
    return this.stoppedByEdge ? 'stop' : 'cancelled';
  }
  finished = false;
  trieExhaustedSent = false;
  /** A trie pushed by the edge, applied between steps. */
  incomingTrie: { bytes: Uint8Array; outputLength: number } | null = null;
  /**
   * The edge trie's history chain (a repeated greedy request; see
   * shared/drafting/edge-trie.ts), followed along the output apart from the
   * drafter: a wide batch's rows draft chains without building their drafter,
   * and this is the one a repeated request should take. Null once off it.
   */
  historyChain: EdgeTrieFollower | null = null;
  /** This step's chain is the history chain's (its estimates are the edge's, not the table's to calibrate). */
  historyChainStep = false;
  /** Whether the edge shipped or pushed a trie for this request (sssd). */
  hasEdgeTrie = false;
  /** Accepted tokens that came from the current edge trie (a fresh one is asked for only if this one paid). */
  edgeAcceptedSinceTrie = 0;
  /** Prompt tokens whose keys/values came from the prefix cache instead of a prefill. */
  cachedPromptTokens = 0;
  /** This generation's prompt, offered to other prompts while it runs (prefix-cache.ts). */
  sharedPrefix: SharedPrefix | null = null;
  /** The prefix cache's clear count when this generation came in: a clear of its salt since means its keys/values are not kept. */
  prefixEpoch = 0;
  /** Logit bias, repetition / frequency / presence penalties and min_tokens' masked end ids, when the request has any. */
  adjustments: LogitAdjustments | null = null;
  /** The structured output's masks (also inside `adjustments`), which drafts are cut to (structured-drafts.ts); null: none. */
  textMasks: TextMasks | null = null;
  /** The request's stop strings over its output's text (stop-strings.ts): the step that completes one ends it; null: none. */
  stopStrings: StopStrings | null = null;
  /** Scratch for cutting drafts to the language: two entries a node. */
  pruneScratch: Int32Array | null = null;
  /** The ids that end this generation: the model's end tokens (unless ignoreEos) and its stop token ids. Set at admission. */
  endIds: ReadonlySet<number> = new Set<number>();
  /** A scored prompt's log-probabilities so far (promptLogprobs), read off each prefill chunk; sent whole after the last. */
  promptScores: { logprobs: number[]; top: Array<Array<[number, number]>>; ranks: number[] } | null = null;

  // Per-step row buffers (chain + tree), sized for the prompt or the largest tree (grown for a recompute: requeueByRecompute).
  rowTokens: Int32Array;
  rowParents: Int32Array;
  /** Row index of each tree node this step (-1 = not sent). */
  readonly treeToRow: Int32Array;
  rowToTree: Int32Array;
  commitBuffer: Int32Array;
  rowLength = 0;
  treeUsed = 0;
  /** Accepted draft tokens per drafted step, decayed; -1 before the first drafted step. */
  acceptedPerDraft = -1;
  /** Consecutive speculating steps this row was kept from drafting (resting or unpaid). */
  skippedDrafts = 0;
  /** A kept-from-drafting row drafts again (a probe) once it has skipped this many steps less one; doubled after each probe that does not pay (RowDrafting). */
  probeEvery = 8;
  /** The row's skips are for drafts that did not pay (its own acceptance): its probes are small, and back off. */
  backedOff = false;
  /** This step's draft is a backed-off row's probe (RowDrafting.noteSkip). */
  probing = false;
  /** Draft nodes the budget sent per drafted step, decayed; -1 before the first (RowDrafting.draftSize). */
  sentPerDraft = -1;
  /** Consecutive drafted steps the budget gave no nodes to. */
  refusedSteps = 0;
  tree: DraftTree | null = null;
  /** This step's tree is a table chain (wide batches, see step-plan.ts), not the drafter's. */
  chainStep = false;
  /** The chain's tree, made at the first chained step, and its calibrated estimates (what the budget reads). */
  chainTree: DraftTree | null = null;
  chainProbs: Float32Array | null = null;
  /** A sampled row's table tree (RowDrafting.sampledFromTable), made at its first. */
  tableTree: DraftTree | null = null;
  /** Acceptance calibration key of this row's chains. */
  readonly chainAcceptanceKey: string;
  /** The calibration of that key, looked up at the row's first chain (the scheduler's, shared by rows of the same key). */
  chainCalibration: DepthCalibration | null = null;
  /** A sampled row's noise for its chains and table trees (the verifier's own). */
  readonly chainCoupling: ChainCoupling | null;

  /** Key of this row's acceptance calibration: its method, sampled rows apart (they accept far less). */
  readonly acceptanceKey: string;

  /** Times its row was taken for another tenant's generation (preemption.ts); it resumes by recompute. */
  preemptions = 0;
  /** Positions its cache held when it was last preempted: what its resumption feeds again, less what the prefix cache gives back. */
  lostPositions = 0;
  /** Its tenant's slot in the per-tenant metrics (tenant-metrics.ts), given as it is queued. */
  tenantSlot = 0;

  // Usage.
  drafts = 0;
  draftTokens = 0;
  acceptedTokens = 0;
  steps = 0;
  readonly submittedAt = performance.now();
  startedAt = 0;
  /** When its last tokens event was emitted (0 = none yet), for the inter-token latency. */
  lastTokenAt = 0;
  /** When its first tokens event was emitted (0 = none yet). */
  firstTokenAt = 0;

  constructor(
    readonly request: GenerateRequest,
    readonly sink: GenerationSink,
    /** Null: speculation off, or dropped after a drafting fault (Scheduler.dropDrafter). */
    public drafter: Drafter | null,
    /** The sampling noise of a sampled request (see shared/sampling/gumbel-noise.ts); null when greedy. */
    readonly noise: GumbelNoise | null,
    maxTreeNodes: number,
    /** Tokens this generation may still occupy (prompt + maxTokens, clamped to the context). */
    readonly reservedTokens: number,
  ) {
    this.acceptanceKey = noise ? `${request.speculation}:sampled` : request.speculation;
    this.chainAcceptanceKey = `${this.acceptanceKey}:chain`;
    this.chainCoupling = noise ? { noise, temperature: request.sampling.temperature } : null;
    // From the drafter: the request's trie text is dropped once decoded.
    this.hasEdgeTrie = request.speculation === 'sssd' && (drafter?.shippedTrie?.length ?? 0) > 0;
    this.promptIds = Int32Array.from(request.promptIds);
    this.pending = this.promptIds;
    this.pendingLength = this.promptIds.length;
    const rowCapacity = this.promptIds.length + maxTreeNodes + 1;
    this.rowTokens = new Int32Array(rowCapacity);
    this.rowParents = new Int32Array(rowCapacity);
    this.treeToRow = new Int32Array(maxTreeNodes + 1);
    this.rowToTree = new Int32Array(rowCapacity);
    this.commitBuffer = new Int32Array(rowCapacity);
  }

  get id(): string {
    return this.request.id;
  }

  /**
   * Goes on without its drafter for good, its output the same: it has no
   * room left to draft (draftRoomFor), and feeding the drafter its tokens,
   * following its edge trie or counting it in a step's plan would be work for
   * nothing. A trie pushed later is taken unread (Scheduler.trieReader).
   */
  retireDrafter(): void {
    const drafter = this.drafter;
    this.drafter = null;
    this.historyChain = null;
    try {
      drafter?.release?.();
    } catch {
      // Its memory goes to the collector instead.
    }
  }

  /**
   * Its row was taken (preemption.ts) at a step boundary, its cache freed
   * (`cacheLength` positions): it resumes by recompute, feeding its context
   * again as a prompt. With output, prompt + output is the chain (its last
   * token is what the next step fed anyway, so the step that feeds it
   * emits the very tokens, and sampled ones by the same noise: the noise is
   * keyed by position); the row buffers grow to hold it. Without, it starts
   * its prompt over, scores included (none were sent yet). Everything else
   * (drafter, stop strings, masks, penalties, usage) is kept as it was.
   */
  requeueByRecompute(cacheLength: number): void {
    this.preemptions++;
    this.lostPositions = cacheLength;
    this.feedLength = 0;
    this.tree = null;
    this.treeUsed = 0;
    this.rowLength = 0;
    if (this.output.length === 0) {
      this.pending = this.promptIds;
      this.pendingLength = this.promptIds.length;
      this.promptScores = null;
      return;
    }
    const context = this.contextTokens();
    this.pending = context;
    this.pendingLength = context.length;
    const capacity = context.length + this.rowTokens.length - this.promptIds.length;
    if (this.rowTokens.length < capacity) {
      this.rowTokens = new Int32Array(capacity);
      this.rowParents = new Int32Array(capacity);
      this.rowToTree = new Int32Array(capacity);
      this.commitBuffer = new Int32Array(capacity);
    }
  }

  /** Context tokens so far (prompt + output). */
  get sequenceLength(): number {
    return this.promptIds.length + this.output.length;
  }

  /** Whose share of the batch's slots it takes (the scheduler's admission): its tenant, or the shared one. */
  get tenant(): string {
    return this.request.tenant ?? '';
  }

  /** The prefix cache's scope of this request (prefix-cache.ts): its cacheSalt, or the shared one. */
  get cacheSalt(): string {
    return this.request.cacheSalt ?? '';
  }

  /** The first `length` context tokens (prompt, then output), as a fresh array. */
  contextTokens(length = this.sequenceLength): Int32Array {
    const out = new Int32Array(length);
    const fromPrompt = Math.min(length, this.promptIds.length);
    out.set(this.promptIds.subarray(0, fromPrompt));
    for (let i = fromPrompt; i < length; i++) out[i] = this.output[i - this.promptIds.length];
    return out;
  }

  /** Writes the last min(out.length, sequenceLength) context tokens into out; returns how many. */
  fillTail(out: Int32Array): number {
    const k = Math.min(out.length, this.sequenceLength);
    const from = this.sequenceLength - k;
    for (let i = 0; i < k; i++) {
      const at = from + i;
      out[i] = at < this.promptIds.length ? this.promptIds[at] : this.output[at - this.promptIds.length];
    }
    return k;
  }

  usage(): SpeculationUsage {
    return {
      drafts: this.drafts,
      draftTokens: this.draftTokens,
      acceptedTokens: this.acceptedTokens,
      steps: this.steps,
      meanAcceptanceLength: this.steps === 0 ? 0 : this.output.length / this.steps,
    };
  }

  /** For the request log, as the generation ends. */
  finishedSummary(finishReason: FinishedGeneration['finishReason']): FinishedGeneration {
    return {
      id: this.id,
      tenant: this.request.tenant ?? null,
      speculation: this.request.speculation,
      temperature: this.request.sampling.temperature,
      finishReason,
      promptTokens: this.promptIds.length,
      cachedPromptTokens: this.cachedPromptTokens,
      completionTokens: this.output.length,
      queueMs: this.startedAt === 0 ? null : this.startedAt - this.submittedAt,
      timeToFirstTokenMs: this.firstTokenAt === 0 ? null : this.firstTokenAt - this.submittedAt,
      durationMs: performance.now() - this.submittedAt,
      steps: this.steps,
      drafts: this.drafts,
      draftTokens: this.draftTokens,
      acceptedTokens: this.acceptedTokens,
      ...(finishReason === 'cancelled' && this.cancelledBy !== null ? { cancelReason: this.cancelledBy } : {}),
      ...(finishReason === 'error' && this.error !== null ? { error: this.error } : {}),
      ...((this.request.resumedOutputTokens ?? 0) > 0 ? { resumedOutputTokens: this.request.resumedOutputTokens } : {}),
      ...(this.preemptions > 0 ? { preemptions: this.preemptions } : {}),
    };
  }

  doneEvent(finishReason: FinishReason): PoolEvent {
    return {
      type: 'done',
      finishReason,
      usage: {
        promptTokens: this.promptIds.length,
        completionTokens: this.output.length,
        cachedPromptTokens: this.cachedPromptTokens,
        speculation: this.usage(),
      },
    };
  }
}
