/**
 * How a step drafts, decided once per step before any row drafts: the
 * fused drafter speculates (the budget sizes its trees), the batch chains
 * from the model's next-token table (too wide for the fused drafter, or
 * its vote went against it), or the batch decodes plain. RowDrafting then
 * drafts each row under the plan.
 */
import type { TreeBudget } from '../budget/tree-budget';
import type { SpeculationGovernor } from '../budget/speculation-governor';
import type { BatchSizeCaps } from '../budget/batch-size-caps';
import type { NextTokenTable } from '../../shared/drafting/next-token-table';
import type { RunnerSequence } from './batch-runner';
import type { Generation } from './generation';
import type { DraftingStep, RowDrafting } from './row-drafting';

/** Batches of at least this many rows speculate only where the governor's measurements say it pays, however cheap the pass makes extra tokens. */
export const GOVERNED_FROM_ROWS = 16;
/** The governor's and the budget's arm for table chains: they cost and accept unlike fused trees. */
export const CHAIN_METHOD = 'sssd:chain';

/** A step's plan: what its rows draft under, and whether the fused drafter speculates. */
export interface StepPlan extends DraftingStep {
  /** The fused drafter speculates this step (its trees are cut by the budget under `method`). */
  speculate: boolean;
}

export interface StepPlannerOptions {
  /** null: never speculate. */
  budget: TreeBudget | null;
  /** Measured on/off guard over the budget; null: always follow the budget. */
  governor: SpeculationGovernor | null;
  /** The model's next-token table; null: wide batches decode plain. */
  chainTable: NextTokenTable | null;
  /** The operator's caps on draft nodes by batch size; null: maxTreeNodes at every size. */
  batchSizeCaps: BatchSizeCaps | null;
  maxTreeNodes: number;
  /** Which rows ran long without a fused drafter (they chain, or keep the vote). */
  drafting: RowDrafting;
}

export class StepPlanner {
  private readonly methodCounts = new Map<string, number>();

  constructor(private readonly options: StepPlannerOptions) {}

  /** Fills `plan` for this step's batch (one object, reused every step) and returns it. */
  plan(batch: readonly Generation<RunnerSequence>[], plan: StepPlan): StepPlan {
    const { budget, governor, chainTable, batchSizeCaps, drafting } = this.options;
    const n = batch.length;
    // Only batches with rows that can draft take part in the governor's
    // comparison, judged under the method most of their rows use.
    const method = this.dominantDraftMethod(batch);
    // Below GOVERNED_FROM_ROWS rows speculation is not put to the measured
    // vote, and the budget alone sizes the trees to what pays,
    // unless a row in the batch ran plain past LATE_BUILD_TOKENS (its first
    // draft would index a long context: the tail of a level that ran wide,
    // where speculating measured 1-11% slower end to end). The vote's
    // samples are per cycle on a machine whose speed drifts by 20-40% within
    // a minute, and the losing arm is only seen in probe blocks, cold:
    // voting at batch 3-15 kept speculation off for long stretches at
    // concurrency 8 (1.5-2.2 tokens per step, 0.89-1.11x in six runs, against
    // 3.1-3.2 and 1.10-1.24x with no vote) and its probes of plain decoding
    // cost a tenth of the steps at concurrency 1. From GOVERNED_FROM_ROWS rows
    // on the vote is held anyway: there the CPU's share of a step (drafting,
    // acceptance, reading more logits back), which the pass's cost curve does
    // not see, decides; on an H200 with resident keys/values, `pld` ran at
    // 0.82x of `off` at 128 rows without it.
    // The operator's cap for this batch size bounds trees and chains alike; 0 drafts nothing.
    const userCap = batchSizeCaps ? batchSizeCaps.capFor(n) : this.options.maxTreeNodes;
    const chainable = userCap > 0 && chainTable !== null && budget !== null && method === 'sssd' && budget.options.policy === 'marginal';
    let maxPast = 0;
    let lateRows = false;
    // Whether every row that could draft would chain rather than build its
    // fused drafter late (lateChain): then the batch is a chains batch, put to
    // the chains' vote, not the fused drafter's.
    let allChain = chainable;
    for (let r = 0; r < n; r++) {
      const gen = batch[r];
      maxPast = Math.max(maxPast, gen.cache!.length);
      if (!lateRows && drafting.ranPlainLong(gen)) lateRows = true;
      if (allChain && gen.drafter && !drafting.lateChain(gen)) allChain = false;
    }
    const nearlyFree = budget !== null && n * 4 <= budget.kneeTokens;
    // Past half the knee with no table to chain from (no datastore's table, or another method; the marginal budget's
    // rule, as chains are), fused trees are put to the vote: unvoted, `sssd` with no datastore ran at 0.89-0.91x of `off` at concurrency 8 (1.46 tokens a step).
    const wideUnchained = !chainable && budget !== null && budget.options.policy === 'marginal' && 2 * n > budget.kneeTokens;
    const unvoted = (nearlyFree || !lateRows) && n < GOVERNED_FROM_ROWS && !wideUnchained;
    // Where two tokens a row already take the pass past its knee (2 · rows >
    // knee tokens), a draft token costs about what a row does, and the fused
    // drafter's extra accepted tokens do not pay for its sources (40-130 µs a
    // row) against a table chain's hash probes: the batch chains. At concurrency 8 on the 2-core
    // CPU (knee 10 tokens: from 6 rows), 1.59x of `off` on average over
    // eleven runs against 1.45x over seven with fused trees to 20 rows, at
    // 3.0-3.3 tokens a step against 3.5 (docs/benchmarks.md, "Chains from
    // half the knee"). On a GPU the knee is hundreds of tokens, and fused
    // trees stay.
    const fusedSitsOut = chainable && 2 * n > budget.kneeTokens;
    const speculate =
      userCap > 0 &&
      !allChain &&
      !fusedSitsOut &&
      budget !== null &&
      method !== null &&
      (unvoted || (budget.wantsDrafts(n, method, maxPast) && (governor ? governor.decide(n, method) : true)));
    // A batch the fused drafter sits out (too wide, or the vote went against
    // it) speculates with table chains where the governor measures them
    // paying (an arm of their own, CHAIN_METHOD). A chain costs a hash probe
    // or two per node against 40-130 µs for a fused tree's sources, and that
    // drafting, more than the extra tokens, was what made speculation lose at
    // 16+ rows on the 2-core CPU: at concurrency 32 and 128, chains of up to
    // 3-4 tokens ran at 1.02-1.12x and 1.24-1.29x of `off` (2.2-2.8 tokens per
    // step), where the pool had decoded plain at 0.87-0.97x (docs/benchmarks.md).
    const chains = !speculate && chainable && (governor ? governor.decide(n, CHAIN_METHOD) : true);
    plan.n = n;
    plan.cap = budget && speculate ? Math.min(userCap, budget.draftCap(n, maxPast)) : 0;
    plan.userCap = userCap;
    plan.chains = chains;
    // In a step the fused drafter speculates, rows that ran long without it
    // (they chained, or decoded plain, while the batch was wide) chain rather
    // than build it late: in the tails of levels at concurrency 32, where
    // the batch narrows, fused steps of 1-7 rows ran at ~1.2-3.8 tokens/ms
    // (each late row's first draft indexes its whole context) against ~6
    // for chains; all rows of a level chaining to their end measured
    // 1.20-1.32x of `off` against 1.02-1.30x (docs/benchmarks.md). Sampled
    // rows draft table trees in such steps (RowDrafting.sampledFromTable).
    plan.lateChains = speculate && chainable;
    plan.nearlyFree = nearlyFree;
    plan.method = method;
    plan.maxPast = maxPast;
    plan.speculate = speculate;
    return plan;
  }

  /** The method most of the batch's drafting rows use; null when no row can draft. */
  private dominantDraftMethod(batch: readonly Generation<RunnerSequence>[]): string | null {
    const counts = this.methodCounts;
    counts.clear();
    let best: string | null = null;
    let bestCount = 0;
    for (const gen of batch) {
      if (!gen.drafter) continue;
      const m = gen.request.speculation;
      const c = (counts.get(m) ?? 0) + 1;
      counts.set(m, c);
      if (c > bestCount) {
        bestCount = c;
        best = m;
      }
    }
    return best;
  }
}
