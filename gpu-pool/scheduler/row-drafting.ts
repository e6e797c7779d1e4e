/**
 * How each row of a step drafts, once the step's plan is made (StepPlanner,
 * step-plan.ts, decides whether the batch speculates with fused trees, with
 * table chains, or not at all): a row drafts its fused tree (edge trie, context,
 * datastore), a coupled tree from the model's next-token table (a sampled
 * row), a table or history chain (a batch too wide for the fused drafter, or
 * a row that ran plain too long to build it now), or nothing (a row the
 * budget keeps refusing rests, a row whose acceptance does not pay for its
 * drafting skips). What it drafts goes into the row's BudgetRow for the
 * budget to cut.
 */
import type { BudgetRow, TreeBudget } from '../budget/tree-budget';
import type { AcceptanceRecord } from '../budget/acceptance-record';
import type { NextTokenTable } from '../../shared/drafting/next-token-table';
import { createDraftTree, type DraftTree } from '../../shared/drafting/draft-tree';
import { MAX_CHAIN, draftTableChain } from '../../shared/drafting/table-chain';
import { draftTableTree } from '../../shared/drafting/table-tree';
import { EdgeTrieFollower, historyChainNodes } from '../../shared/drafting/edge-trie';
import type { RunnerSequence } from './batch-runner';
import type { Generation } from './generation';
import { pruneToLanguage } from '../verify/structured-drafts';
import { AutomatonLimitError } from '../../shared/structured/automaton-limit-error';

/** Output tokens past which a row that has not drafted yet may stay plain (RowDrafting.startsTooLate). */
export const LATE_BUILD_TOKENS = 32;
/**
 * Longest table chain a row drafts (the budget picks one length for all,
 * TreeBudget.allocateUniform). Chains have an arm of their own in the
 * governor (CHAIN_METHOD) and their own acceptance calibration: they cost and
 * accept unlike the fused drafter's trees.
 */
export const CHAIN_NODES = 4;
/** A row the budget keeps refusing (resting) drafts again (a probe) every this many speculating steps. */
export const PROBE_EVERY = 8;
/**
 * A row whose own drafts stopped paying (unpaid) probes again after one
 * skipped step, then after 3, 7, 15, ... (each probe that does not pay
 * doubles the wait), at most every MAX_PROBE_EVERY steps. The first wait is
 * short for the rows that mostly pay: an `sssd` row's acceptance dips for a
 * step or two where its text leaves what the drafters know, and comes back
 * when it returns to a story; a row whose drafts never pay (`pld` on a text
 * that does not repeat itself) probes 6 times in 128 steps.
 */
export const FIRST_PROBE_EVERY = 2;
export const MAX_PROBE_EVERY = 64;
/**
 * Most nodes a probe of a row whose drafts do not pay drafts: enough to see
 * whether they are accepted again, little to lose. What the probe has
 * accepted, not the row's record before it, decides whether it drafts on
 * (RowAcceptance, Scheduler.buildRow).
 */
export const PROBE_NODES = 4;

/** What a step decided that its rows draft under (StepPlanner.plan fills it, one object reused every step). */
export interface DraftingStep {
  /** Rows in the batch. */
  n: number;
  /** Most fused-tree nodes a row drafts; 0: the fused drafter sits this step out. */
  cap: number;
  /** The operator's cap on draft nodes at this batch size (BatchSizeCaps). */
  userCap: number;
  /** Every drafting row chains (a batch the fused drafter sits out). */
  chains: boolean;
  /** Rows that ran long without a fused drafter, and sampled rows, draft from the table beside fused trees. */
  lateChains: boolean;
  /** Draft tokens cost next to nothing at this batch size (four a row fit under the pass's knee). */
  nearlyFree: boolean;
  /** The batch's dominant drafting method, the budget's prices are kept under. */
  method: string | null;
  /** The batch's longest past. */
  maxPast: number;
}

/** What a step's drafting did, for the budget's learning and the governor's accounts. */
export interface DraftingTally {
  /** Rows that drafted a fused tree from an already built drafter (the steady cost the budget learns). */
  draftedRows: number;
  /** Time building lazy drafters (first drafts, or catching up after steps without one). */
  buildMs: number;
  /** Rows that drafted a chain. */
  chained: number;
  /** Time on chains and table trees beside fused trees (late and sampled rows): not the fused drafter's cost. */
  chainMs: number;
  /** Rows kept from drafting because their own acceptance does not pay for their drafts (RowDrafting's back-off). */
  unpaid: number;
  /** Rows kept from drafting because the budget refused their last drafts, or they start too late. */
  resting: number;
  /** Backed-off (unpaid) rows that drafted a probe. */
  probes: number;
}

export interface RowDraftingOptions {
  maxTreeNodes: number;
  contextLength: number;
  budget: TreeBudget | null;
  /** The model's next-token table; null: no chains and no table trees. */
  chainTable: NextTokenTable | null;
  acceptance: AcceptanceRecord;
  /** A drafter that threw: the row goes on without speculation (Scheduler.dropDrafter). */
  dropDrafter: (gen: Generation<RunnerSequence>, err: unknown) => void;
}

export class RowDrafting {
  private readonly maxTreeNodes: number;
  private readonly contextLength: number;
  private readonly budget: TreeBudget | null;
  private readonly chainTable: NextTokenTable | null;
  private readonly acceptance: AcceptanceRecord;
  private readonly dropDrafter: (gen: Generation<RunnerSequence>, err: unknown) => void;
  /** The last context tokens of the row being chained (a table key spans at most 8). */
  private readonly chainTail = new Int32Array(8);

  constructor(options: RowDraftingOptions) {
    this.maxTreeNodes = options.maxTreeNodes;
    this.contextLength = options.contextLength;
    this.budget = options.budget;
    this.chainTable = options.chainTable;
    this.acceptance = options.acceptance;
    this.dropDrafter = options.dropDrafter;
  }

  /** Drafts for one row of `step` into `row` (its tree, the nodes it has, their estimates), counting into `tally`. */
  draft(gen: Generation<RunnerSequence>, row: BudgetRow, step: DraftingStep, tally: DraftingTally): void {
    row.chainLength = gen.feedLength;
    row.available = 0;
    row.probs = null;
    gen.tree = null;
    const { n, cap, userCap, chains, lateChains, nearlyFree, method, maxPast } = step;
    // A prompt still going in by chunks drafts nothing until its last chunk.
    const room = gen.feedLength < gen.pendingLength ? 0 : this.draftRoom(gen);
    // Drafting costs CPU time every step: a row the budget keeps refusing
    // only drafts now and then, to notice when speculation pays again.
    // Counted per row over speculating steps only: a probe keyed to the
    // global step count could stay out of phase with the budget's and the
    // governor's own probes, and a row would never draft again.
    // Where tokens are nearly free, a row still on the user's own edge trie
    // always drafts: following it costs next to nothing, and the history of
    // other requests (what the resting and paying rules go by) says nothing
    // about this user's cache.
    const followsEdge = nearlyFree && gen.hasEdgeTrie && gen.drafter !== null && !gen.drafter.edgeTrieExhausted;
    const probe = cap > 0 && (followsEdge || gen.skippedDrafts + 1 >= gen.probeEvery);
    const resting = (gen.refusedSteps >= 2 && !probe) || this.startsTooLate(gen);
    // Likewise a row whose recent acceptance does not pay for its drafting
    // and for the pass time of the tokens it sends (TreeBudget.rowPaysForDrafting),
    // priced with its own record: the budget's estimates are corrected per
    // method, not per row, and below GOVERNED_FROM_ROWS nothing else stops a
    // row whose drafts keep failing (`pld` at 3% on random-word prompts ran
    // at 0.73x of `off` at concurrency 1).
    const unpaid =
      !probe && cap > 0 && !this.budget!.rowPaysForDrafting(n, this.acceptance.expected(gen.acceptanceKey, gen.acceptedPerDraft), maxPast, method!, gen.sentPerDraft);
    // Whether the row's last step was a probe; this one is only where noteSkip says so.
    const probedLast = gen.probing;
    gen.probing = false;
    if (cap > 0 && gen.drafter && room > 0) this.noteSkip(gen, resting, unpaid, followsEdge, probedLast, tally);
    const chainsHere = chains || (lateChains && (this.lateChain(gen) || this.sampledFromTable(gen)));
    if (gen.drafter && cap > 0 && room > 0 && !resting && !unpaid && !chainsHere) {
      // A lazy drafter's first draft builds it (once per request), and a
      // draft after steps without one takes in the queued tokens: both kept
      // out of the per-step drafting time the budget learns, or each would
      // make drafting look several times dearer than a steady step's is.
      const building = gen.drafter.built === false || (gen.drafter.queuedTokens ?? 0) > 8;
      const t = building ? performance.now() : 0;
      let tree: DraftTree | null = null;
      try {
        // A backed-off row's probe is small: enough to see whether its drafts are accepted again.
        const size = this.draftSize(gen, Math.min(cap, room));
        tree = gen.drafter.draft(gen.probing ? Math.min(PROBE_NODES, size) : size);
      } catch (err) {
        this.dropDrafter(gen, err);
      }
      if (building) tally.buildMs += performance.now() - t;
      else if (tree) tally.draftedRows++;
      if (tree) {
        gen.tree = tree;
        row.available = Math.min(tree.size - 1, this.maxTreeNodes);
        row.probs = tree.probs;
        row.scale = this.acceptance.probScale(gen.acceptanceKey);
      }
    }
    gen.historyChainStep = false;
    if (chainsHere && !chains && gen.drafter && this.sampledFromTable(gen) && room > 0) {
      // A sampled row beside fused trees (or alone): a coupled tree from the table.
      const started = performance.now();
      gen.tableTree ??= createDraftTree(this.maxTreeNodes + 1);
      let len = 0;
      try {
        const k = gen.fillTail(this.chainTail);
        len = draftTableTree(this.chainTable!, this.chainTail, k, gen.sequenceLength, this.draftSize(gen, Math.min(cap, room, this.maxTreeNodes)), gen.tableTree, gen.chainCoupling!);
      } catch (err) {
        this.dropDrafter(gen, err);
      }
      if (len > 0) {
        gen.tree = gen.tableTree;
        row.available = len;
        row.probs = gen.tableTree.probs;
        row.scale = this.acceptance.probScale(gen.acceptanceKey);
      }
      tally.chainMs += performance.now() - started;
    } else if (chainsHere && gen.drafter && this.canChain(gen) && room > 0) {
      const chainStarted = chains ? 0 : performance.now();
      gen.chainTree ??= createDraftTree(MAX_CHAIN + 1);
      // A repeated request's history chain, where the edge shipped one, before
      // the table's guess: at concurrency 32 the table's chains accept ~1.4
      // tokens a row a step, a history chain nearly all it is sent. As long
      // as the table's: a pass pads every row to its longest.
      let fromHistory = 0;
      let len = 0;
      try {
        fromHistory = gen.historyChain !== null ? gen.historyChain.chainAhead(gen.chainTree, Math.min(CHAIN_NODES, room, userCap)) : 0;
        len = fromHistory;
        if (fromHistory === 0) {
          const k = gen.fillTail(this.chainTail);
          len = draftTableChain(this.chainTable!, this.chainTail, k, gen.sequenceLength, Math.min(CHAIN_NODES, room, userCap), gen.chainTree, gen.chainCoupling);
        }
      } catch (err) {
        // As a drafter that throws (dropDrafter): this row goes on plainly.
        this.dropDrafter(gen, err);
        len = 0;
      }
      if (len > 0) {
        gen.tree = gen.chainTree;
        gen.chainStep = true;
        if (fromHistory > 0) {
          // The edge's estimates are measured ones (history-match.ts); the table's calibration is not theirs.
          gen.historyChainStep = true;
          row.probs = gen.chainTree.probs;
        } else {
          gen.chainProbs ??= new Float32Array(MAX_CHAIN + 1);
          gen.chainCalibration ??= this.acceptance.chainCalibration(gen.chainAcceptanceKey);
          gen.chainCalibration.apply(gen.chainTree.probs, len, gen.chainProbs);
          row.probs = gen.chainProbs;
        }
        row.available = len;
        row.scale = 1;
        tally.chained++;
      }
      if (!chains) tally.chainMs += performance.now() - chainStarted;
    }
    if (gen.textMasks !== null && gen.tree !== null && row.available > 0) this.cutToLanguage(gen, row);
  }

  /**
   * A row that could draft this step: counts a step it was kept from
   * drafting, or starts it drafting again. A row kept for its own record
   * (unpaid) backs off: it probes after FIRST_PROBE_EVERY - 1 skipped steps,
   * and each probe after which it still does not pay doubles the wait for the
   * next, to MAX_PROBE_EVERY. Drafting again for real (not a probe) ends it.
   */
  private noteSkip(gen: Generation<RunnerSequence>, resting: boolean, unpaid: boolean, followsEdge: boolean, probedLast: boolean, tally: DraftingTally): void {
    if (resting || unpaid) {
      if (unpaid) {
        if (!gen.backedOff) gen.probeEvery = FIRST_PROBE_EVERY;
        else if (probedLast) gen.probeEvery = Math.min(MAX_PROBE_EVERY, gen.probeEvery * 2);
        gen.backedOff = true;
        tally.unpaid++;
      } else {
        if (gen.backedOff) gen.probeEvery = PROBE_EVERY;
        gen.backedOff = false;
        tally.resting++;
      }
      gen.skippedDrafts++;
      return;
    }
    gen.probing = gen.backedOff && gen.skippedDrafts > 0 && !followsEdge;
    if (gen.probing) tally.probes++;
    else {
      gen.probeEvery = PROBE_EVERY;
      gen.backedOff = false;
    }
    gen.skippedDrafts = 0;
  }

  /** A structured output's row: the draft nodes its masks would never accept are cut before the budget sizes the tree. */
  private cutToLanguage(gen: Generation<RunnerSequence>, row: BudgetRow): void {
    const tree = gen.tree!;
    if (gen.pruneScratch === null || gen.pruneScratch.length < 2 * tree.size) gen.pruneScratch = new Int32Array(2 * Math.max(tree.size, this.maxTreeNodes + 1));
    try {
      const size = pruneToLanguage(tree, row.probs !== tree.probs ? row.probs : null, gen.textMasks!, gen.pruneScratch);
      row.available = Math.min(size - 1, this.maxTreeNodes);
    } catch (err) {
      // The language's automaton past a bound: the tree half cut is not used this step. Past the drafts' own budget the
      // generation goes on (later steps cut over the states built); past the automaton's, the verifier, walking the
      // same states, ends the generation with the error.
      if (!(err instanceof AutomatonLimitError)) throw err;
      gen.tree = null;
      row.available = 0;
      row.probs = null;
    }
  }

  /**
   * A row that can draft but has not, past LATE_BUILD_TOKENS output tokens
   * (its drafter was never built). A sampled row that drafts from the table
   * by design (sampledFromTable) never builds it and is not such a row.
   */
  ranPlainLong(gen: Generation<RunnerSequence>): boolean {
    return gen.drafter !== null && gen.drafter.built === false && gen.output.length > LATE_BUILD_TOKENS && !this.sampledFromTable(gen);
  }

  /**
   * A sampled `sssd` row drafts from the table alone, never building its
   * fused drafter: a coupled tree (table-tree.ts) in steps where the fused
   * drafter drafts for greedy rows, a chain in wide batches. On dev-sessions'
   * sampled requests as served (eval-drafts), table chains had τ 2.55 /
   * 2.89 at 4 / 8 nodes against 2.38 / 2.84 for the fused tree, for 6-8 µs
   * of drafting a step against 17-25; served alone, sampled requests went
   * from 1.51x to 1.85x of `off` at concurrency 1 and from 1.15x to 1.49x at
   * 8 (docs/benchmarks.md, "Sampled rows chain"). The table tree drafts them
   * better still: 2.65 / 3.20 / 3.51 / 3.67 at 4 / 8 / 12 / 16 nodes, where
   * the chain stops at 2.89 ("Coupled drafts that know how sure they are").
   * A row with a predicted output drafts its fused tree: the prediction is
   * in its context source, and far likelier than the table's guess where the
   * output follows it (tokens a step 3.5 → 6.0-11.5 at temperature 0.8).
   */
  private sampledFromTable(gen: Generation<RunnerSequence>): boolean {
    return this.chainTable !== null && this.canChain(gen) && gen.request.sampling.temperature > 0 && gen.request.predictionIds === undefined;
  }

  /** A row that chains rather than build its fused drafter now: it ran long without one (see ranPlainLong). */
  lateChain(gen: Generation<RunnerSequence>): boolean {
    return this.canChain(gen) && this.ranPlainLong(gen);
  }

  /** Whether a row may draft table chains at all: `sssd` rows that use the datastore (the table is its sidecar). */
  private canChain(gen: Generation<RunnerSequence>): boolean {
    return gen.request.speculation === 'sssd' && gen.request.useDatastore;
  }

  /**
   * Whether a row that has not drafted yet should stay plain: one that ran
   * plain for over LATE_BUILD_TOKENS tokens (a batch too wide to speculate)
   * and has fewer tokens left than twice its context. Its first draft
   * indexes its whole context (~0.3-0.5 ms cold), and its remaining steps
   * would not pay that back: in the tail of a concurrency-32 level (the batch
   * falling below 16 rows), speculation by such rows ran 21-33% slower a step
   * than plain decoding.
   */
  private startsTooLate(gen: Generation<RunnerSequence>): boolean {
    return this.ranPlainLong(gen) && gen.request.maxTokens - gen.output.length < 2 * gen.sequenceLength;
  }

  /**
   * Nodes to draft for a row, at most `cap`: the budget's recent use of this
   * row's drafts with room to grow (a quarter more, plus 2), not the cap
   * itself. Drafting costs about linearly in nodes (the table source: 15 /
   * 33 / 75 µs at 4 / 12 / 32), and at concurrency 1 sampled rows drafted 20
   * nodes a step for the 9 the budget sent; with this, 14 for the same 9
   * (greedy rows: 20 for 15 either way). A row whose drafts are all sent
   * grows its size by a quarter a step, back to the cap.
   */
  private draftSize(gen: Generation<RunnerSequence>, cap: number): number {
    if (gen.sentPerDraft < 0) return cap;
    return Math.min(cap, Math.ceil(gen.sentPerDraft * 1.25) + 2);
  }

  /** Deepest useful draft for the row (draftRoomFor). */
  draftRoom(gen: Generation<RunnerSequence>): number {
    return draftRoomFor(gen.sequenceLength, gen.output.length, gen.request.maxTokens, this.contextLength);
  }
}

/**
 * Deepest useful draft for a row of `sequenceLength` context tokens, with
 * `outputLength` of its `maxTokens` out: within the context and within
 * maxTokens (the bonus needs a slot too). It only shrinks as the row goes
 * on: at 0 the row has nothing left to draft (Generation.retireDrafter).
 */
export function draftRoomFor(sequenceLength: number, outputLength: number, maxTokens: number, contextLength: number): number {
  // The draft's root is the last context token, at position sequenceLength - 1.
  const byContext = contextLength - sequenceLength;
  const byTokens = maxTokens - outputLength - 1;
  return Math.max(0, Math.min(byContext, byTokens));
}

/**
 * A follower of a trie's history chain, caught up along `output` from
 * `outputLength` (the prompt's end for the trie shipped with the request);
 * null where the trie has none or the output has left it.
 */
export function historyChainOf(bytes: Uint8Array | null, output: readonly number[] | null, outputLength: number): EdgeTrieFollower | null {
  if (historyChainNodes(bytes) === 0) return null;
  const f = new EdgeTrieFollower(bytes);
  if (output !== null && (outputLength > output.length || !f.advanceAll(output, outputLength, output.length))) return null;
  return f.onChainAhead ? f : null;
}
