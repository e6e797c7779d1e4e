/**
 * How many draft nodes each request verifies this step.
 *
 * Two policies over the same inputs (each request's drafted tree, best-first
 * order, with per-node acceptance estimates = path products):
 * - `marginal` (default): maximise the batch's expected emitted tokens per ms
 *   of step time under the calibrated cost model. A pass is padded to its
 *   longest row, so the allocations worth considering are "every row takes
 *   the first s nodes of its draft" (fewer where it has fewer) for s =
 *   0..cap: a row shorter than the longest saves nothing. s = 0 — no
 *   speculation — wins whenever drafts cost more than they bring, so
 *   speculation switches itself off under load.
 * - `static`: the SSSD authors' rule, s = I_knee / batch rounded down to a
 *   menu of tree sizes, the same for every request.
 */
import type { CostModel } from './cost-model';
import { RecentMedian } from './recent-median';

export const budgetPolicies = ['marginal', 'static'] as const;
export type BudgetPolicyName = (typeof budgetPolicies)[number];

/** The authors' menu of tree sizes. */
const staticTreeSizes = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32] as const;

export interface BudgetRow {
  /** Tokens of the row before the tree (prompt at prefill, 1 afterwards). */
  chainLength: number;
  /** Draft nodes available (tree size minus the root); 0 for no drafter. */
  available: number;
  /** Node acceptance estimates, index 1.. = draft nodes (index 0 = root). */
  probs: Float32Array | null;
  /** Correction of this row's estimates by the acceptance its method showed so far (1 = trust them). */
  scale: number;
}

export interface TreeBudgetOptions {
  policy: BudgetPolicyName;
  /** Most draft nodes any request gets. */
  maxNodes: number;
  /**
   * The runner runs rows with trees in a pass of their own when padding the
   * others would cost more (the CPU runner): drafting rows then pay for their
   * own tokens, not for padding every plain row, so the knee guard starts at
   * twice the knee.
   */
  splitsPasses?: boolean;
}

/** Drafting steps the drafting cost is the median of, and how many it needs before it is trusted. */
const DRAFT_COST_SAMPLES = 15;
const DRAFT_COST_MIN_SAMPLES = 3;
/**
 * Past the knee, a batch drafts only if a second token per row costs at most
 * this share of its decode step. The 2-core CPU's curves give 0.14-0.43 at
 * batch 8-128 (drafting there lost), the H100's 0.00-0.02, lavapipe's 0.05-0.09.
 */
const SECOND_TOKEN_MAX_SHARE = 0.1;
/**
 * What a sent draft token costs the step, over its pass time on the
 * calibrated curve: its logits read back and walked in verification, a
 * longer row to build. On the 2-core CPU, `pld` on random-word prompts at
 * concurrency 1 (9 tokens sent a drafted step, 3% accepted) made the pass
 * 18-29 µs longer a sent token and the whole step ~35 µs, against the
 * curve's 15-17 (docs/benchmarks.md, "Rows whose drafts are rarely
 * accepted back off").
 */
const SENT_TOKEN_STEP_SHARE = 2;

export class TreeBudget {
  /**
   * Per-row time the runner's curve does not see (drafting, acceptance,
   * streaming), learnt from real iterations: it makes the forward pass a
   * smaller share of the step, and speculation correspondingly cheaper.
   */
  private overheadPerRowMs = 0;
  /**
   * Measured drafting time per drafted row (drafting is paid before the budget
   * sees the trees): the median of the last few steady drafting steps (and of
   * cold ones that came in under it, see observeDraft). A mean
   * let one stalled step (a GC pause, page faults in the datastore: 1.5-4 ms
   * per row against ~0.08) price every row out of drafting, and with no row
   * drafting nothing ever corrected it: half of the sampled-request runs at
   * concurrency 1 fell from 2.5 to 1.2 tokens per step that way.
   */
  private readonly draftCost = new Map<string, RecentMedian>();
  /**
   * Per batch-size bucket: decayed ratio of the predicted throughput with
   * speculation (drafting included) to the one without. Below 1 the rows of
   * such batches stop drafting, but for a probe every 8th step.
   */
  private readonly advantage = new Map<string, { ratio: Float64Array; probes: Int32Array }>();

  private advantageOf(method: string): { ratio: Float64Array; probes: Int32Array } {
    let a = this.advantage.get(method);
    if (!a) {
      a = { ratio: new Float64Array(16).fill(1.5), probes: new Int32Array(16) };
      this.advantage.set(method, a);
    }
    return a;
  }

  /** The shape allocateUniform chose last (the rows it sized, their longest chain, the padded length, the expected gain): what allocate's advantage record prices. */
  private readonly chosen = { shaped: 0, maxChain: 0, maxTokens: 0, gain: 0 };

  /** The I_knee of the static rule, from the calibrated curve (fixed with it; asked several times a step). */
  readonly kneeTokens: number;
  /** Batches of at least this many rows draft only where a second token per row is nearly free (see wantsDrafts). */
  private readonly guardRows: number;

  constructor(
    readonly costModel: CostModel,
    readonly options: TreeBudgetOptions,
  ) {
    this.kneeTokens = costModel.kneeTokens();
    this.guardRows = options.splitsPasses ? 2 * this.kneeTokens : this.kneeTokens;
  }

  /** The static rule's tree size for a batch of `batch` rows. */
  staticSize(batch: number): number {
    const s = Math.min(this.options.maxNodes, Math.floor(this.kneeTokens / Math.max(1, batch)));
    let size = 0;
    for (const t of staticTreeSizes) if (t <= s) size = t;
    return size;
  }

  /**
   * Feed back the drafting time of one step. A `cold` step (drafting after
   * steps without any) costs more than a steady one, so it only counts where
   * it undercuts the estimate: then the steady cost is lower still.
   */
  observeDraft(rows: number, ms: number, method = 'default', cold = false): void {
    if (rows <= 0 || ms < 0) return;
    let m = this.draftCost.get(method);
    if (!m) {
      m = new RecentMedian(DRAFT_COST_SAMPLES, DRAFT_COST_MIN_SAMPLES);
      this.draftCost.set(method, m);
    }
    const perRow = ms / rows;
    if (cold && !(m.value !== undefined && perRow < m.value)) return;
    m.add(perRow);
  }

  /** The drafting time per drafted row the budget goes by (undefined until measured). */
  draftMsPerRow(method = 'default'): number | undefined {
    return this.draftCost.get(method)?.value;
  }

  /** Whether the rows of a batch this size should draft at all this step. */
  wantsDrafts(batch: number, method = 'default', maxPast = 128): boolean {
    if (this.options.policy === 'static') return true;
    // At or past the knee a plain decode step already fills the pass, and on
    // a CPU every draft token then costs what a decode row does: the marginal
    // estimate and the measured governor both could see a win there that was
    // not one (on the 2-core CPU, speculating at batch 16-128 measured per
    // cycle as a tie or a 5-20% win, and lost 10-20% end to end). But the
    // knee counts rows, and a row can cost far more than a token: on the H100
    // through WebGPU each row's past is uploaded every step (knee 81-106
    // rows) while a second token in every row of 128 cost 2% more, and a
    // guard on rows alone held concurrency 128 to 1.13 tokens/step. So past
    // the knee a batch still drafts where that second token is nearly free.
    // A runner that splits passes keeps the rows that draft from padding the
    // rest, so there the guard starts at twice the knee: at concurrency 8 on
    // the 2-core CPU, 1.10-1.11x with the guard at 8 rows (1.32 tokens/step),
    // 1.17-1.20x at 16 (2.2-2.5), three pairs of runs with `--repeat 3`; 4x
    // the knee gave nothing more at 32.
    if (batch >= this.guardRows && this.secondTokenShare(batch, maxPast) > SECOND_TOKEN_MAX_SHARE) return false;
    const b = bucketOf(batch);
    const a = this.advantageOf(method);
    const n = a.probes[b]++;
    return a.ratio[b] >= 1 || n % 8 === 0;
  }

  /**
   * Whether drafting one row pays for itself, asked before drafting with the
   * row's own record, so rows that cannot pay (a hot sampled row, a text the
   * drafters do not know, `pld` on a text that never repeats) skip the
   * drafting CPU time and the pass time of drafts that are not accepted.
   * Two prices, both to be paid:
   * - the drafting: a row that accepts `expectedAccepted` draft tokens per
   *   drafted step saves that many row-steps (each worth this batch's per-row
   *   share of a step), against the measured drafting time per row, which at
   *   batch 8+ on a CPU exceeds a whole decode row-step;
   * - the `expectedSent` tokens it sends, as a lone row: their pass time on
   *   the calibrated curve times SENT_TOKEN_STEP_SHARE, against the lone
   *   row-steps the accepted ones save. Priced alone, not at this batch's
   *   share: a lone row is where a draft token is cheapest next to a row's
   *   step, so this never stops a row that would pay there, and in wider
   *   batches the budget's padded pass and the governor's vote price the
   *   tokens (at 2-5 rows, where the fused drafter still drafts, a row's
   *   share would have stopped `sssd` rows through every dip below 20%).
   * Static policy: always; a method whose drafting is not measured yet pays
   * only for its tokens.
   */
  rowPaysForDrafting(batch: number, expectedAccepted: number, maxPast: number, method = 'default', expectedSent = 0): boolean {
    if (this.options.policy === 'static') return true;
    const measured = this.draftMsPerRow(method);
    const rows = Math.max(1, batch);
    if (measured !== undefined && !(expectedAccepted * (this.stepMs(rows, 1, rows, maxPast) / rows) > measured)) return false;
    const sent = Math.max(0, expectedSent);
    if (sent === 0) return true;
    const sentMs = SENT_TOKEN_STEP_SHARE * (this.costModel.stepMs(1, 1 + sent, 1 + sent, maxPast) - this.costModel.stepMs(1, 1, 1, maxPast));
    return expectedAccepted * this.stepMs(1, 1, 1, maxPast) > sentMs;
  }

  /** Feed back one iteration's measured wall time (ms, drafting excluded) for the shape it ran. */
  observeStep(rows: number, maxTokens: number, totalTokens: number, maxPast: number, ms: number): void {
    if (rows <= 0) return;
    const residual = Math.max(0, Math.min(5, (ms - this.costModel.stepMs(rows, maxTokens, totalTokens, maxPast)) / rows));
    this.overheadPerRowMs = this.overheadPerRowMs * 0.95 + residual * 0.05;
  }

  private stepMs(rows: number, maxTokens: number, totalTokens: number, maxPast: number): number {
    return this.costModel.stepMs(rows, maxTokens, totalTokens, maxPast) + this.overheadPerRowMs * rows;
  }

  /** What a second token in every row adds to a decode step of `batch` rows, as a share of that step (calibrated curve). */
  secondTokenShare(batch: number, maxPast = 128): number {
    const rows = Math.max(1, batch);
    const plain = this.costModel.stepMs(rows, 1, rows, maxPast);
    return plain > 0 ? this.costModel.stepMs(rows, 2, 2 * rows, maxPast) / plain - 1 : Infinity;
  }

  /**
   * How many nodes to ask each request's drafter for (bounds drafting time at
   * large batches). Where a second token per row is nearly free (a knee set
   * by rows, as on a GPU), at least 8: the budget trims what does not pay.
   */
  draftCap(batch: number, maxPast = 128): number {
    if (this.options.policy === 'static') return this.staticSize(batch);
    // A lone row's tree is the whole pass and its drafting the whole cost; the
    // budget's rate sizes it. Capped at twice the knee (22 nodes on the 2-core
    // CPU), a repeated request's history chain (edge-trie.ts) stopped there:
    // 12.96 against 14.37 tokens a step on dev-sessions' repeated greedy
    // requests at concurrency 1, the rest alike (6.79-6.86).
    if (batch <= 1) return this.options.maxNodes;
    const floor = Math.min(this.options.maxNodes, this.secondTokenShare(batch, maxPast) <= SECOND_TOKEN_MAX_SHARE ? 8 : 4);
    return Math.max(floor, Math.min(this.options.maxNodes, Math.ceil((2 * this.kneeTokens) / Math.max(1, batch))));
  }

  /**
   * Writes the number of draft nodes for each row into `out` (index-aligned
   * with `rows`). `method` is the batch's dominant speculation method, whose
   * record of predicted advantage this step updates (see wantsDrafts).
   */
  allocate(rows: readonly BudgetRow[], out: Int32Array, maxPast = 128, method = 'default'): void {
    const batch = rows.length;
    if (batch === 0) return;
    if (this.options.policy === 'static') {
      const size = this.staticSize(batch);
      for (let r = 0; r < batch; r++) out[r] = Math.min(size, rows[r].available);
      return;
    }
    this.allocateUniform(rows, out, maxPast);

    // Would this step have paid for its drafting too? (Sunk now; it decides the
    // next steps.) Judged on the rows that drafted: rows the scheduler kept from
    // drafting (resting, unpaid) say nothing about whether drafting pays, and
    // counting them as drafting for nothing switched speculation off for good.
    // Priced as allocateUniform priced the step it chose (the same shape, not
    // recomputed): the pass padded to its longest row, a row that drafted
    // less (or rested) paying for the same length; where the runner splits
    // passes, rows feeding a prompt next to decode rows run apart and are
    // left out of both sides.
    let draftedRows = 0;
    for (let r = 0; r < batch; r++) if (rows[r].probs !== null) draftedRows++;
    if (draftedRows === 0) return;
    const { shaped, maxChain, maxTokens, gain } = this.chosen;
    const plain = shaped / this.stepMs(shaped, maxChain, shaped * maxChain, maxPast);
    const spec = (shaped + gain) / (this.stepMs(shaped, maxTokens, shaped * maxTokens, maxPast) + (this.draftMsPerRow(method) ?? 0) * draftedRows);
    const ratio = this.advantageOf(method).ratio;
    const b = bucketOf(batch);
    ratio[b] = ratio[b] * 0.8 + (spec / plain) * 0.2;
  }

  /**
   * One length for every row: the first s nodes of each row's draft (fewer
   * where a row has fewer), s chosen for the expected emitted tokens per ms
   * with every row paying for the longest. Per-row trimming (each row cut to
   * the nodes that pay for their own token, the budget until 2026-12-02)
   * assumed a shorter row saves its tokens, which only holds where the
   * runner splits a step into passes (the curve is fitted with such uneven
   * batches), not in the padded pass every step of alike rows runs as. One
   * length for all, interleaved pairs on fresh pools (docs/benchmarks.md,
   * "One length for every row"): table chains at concurrency 32 went from
   * 2.11 tokens per step and 0.96-0.98x of `off` to 2.31 and 1.12x, the fused
   * drafter's trees at concurrency 2 / 4 / 8 from 1.76-1.82x / 1.61-1.64x /
   * 1.25-1.32x to 1.85-1.92x / 1.64-1.76x / 1.37-1.38x.
   * Where the runner splits passes, a row feeding its prompt (chainLength >
   * 1) next to decode rows runs in a pass of its own: it does not set the
   * decode rows' length (it takes the same s, on top of its prompt). Where
   * the runner does not split, the prompt pads the pass, and every row's
   * draft up to that length rides along. Returns s.
   */
  allocateUniform(rows: readonly BudgetRow[], out: Int32Array, maxPast = 128): number {
    const batch = rows.length;
    const apart = this.promptsRunApart(rows);
    let cap = 0;
    let shaped = 0;
    for (const row of rows) {
      if (apart && row.chainLength !== 1) continue;
      shaped++;
      cap = Math.max(cap, Math.min(row.available, this.options.maxNodes));
    }
    let bestS = 0;
    let bestRate = -1;
    let gain = 0;
    const chosen = this.chosen;
    chosen.shaped = shaped;
    for (let s = 0; s <= cap; s++) {
      let maxTokens = 0;
      for (let r = 0; r < batch; r++) {
        const row = rows[r];
        if (apart && row.chainLength !== 1) continue;
        if (s > 0 && s <= row.available && row.probs) gain += row.scale * row.probs[s];
        maxTokens = Math.max(maxTokens, row.chainLength + Math.min(s, row.available));
      }
      if (s === 0) chosen.maxChain = maxTokens;
      const rate = (shaped + gain) / this.stepMs(shaped, maxTokens, shaped * maxTokens, maxPast);
      if (rate > bestRate * 1.0005) {
        bestRate = rate;
        bestS = s;
        chosen.maxTokens = maxTokens;
        chosen.gain = gain;
      }
    }
    for (let r = 0; r < batch; r++) out[r] = Math.min(bestS, rows[r].available);
    return bestS;
  }

  /** Whether rows feeding a prompt (chainLength > 1) run in a pass apart from the decode rows: the runner splits passes and decode rows are present. */
  private promptsRunApart(rows: readonly BudgetRow[]): boolean {
    if (this.options.splitsPasses !== true) return false;
    for (const row of rows) if (row.chainLength === 1) return true;
    return false;
  }

}

function bucketOf(batch: number): number {
  return Math.min(15, 31 - Math.clz32(Math.max(1, batch)));
}
