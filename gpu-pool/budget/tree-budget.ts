/**
 * How many draft nodes each request verifies this step.
 *
 * Two policies over the same inputs (each request's drafted tree, best-first
 * order, with per-node acceptance estimates = path products):
 * - `marginal` (default): maximise the batch's expected emitted tokens per ms
 *   of step time under the calibrated cost model. Candidate allocations are
 *   "every request takes the first s nodes of its tree" for s = 0..cap (a
 *   padded batch pays for its longest row, so rows below it are free), then
 *   nodes whose estimate does not pay for their own token cost are trimmed.
 *   s = 0 — no speculation — wins whenever drafts cost more than they bring,
 *   so speculation switches itself off under load.
 * - `static`: the SSSD authors' rule, s = I_knee / batch rounded down to a
 *   menu of tree sizes, the same for every request.
 */
import type { CostModel } from './cost-model';
import { RecentMedian } from './recent-median';

export const budgetPolicies = ['marginal', 'static'] as const;
export type BudgetPolicyName = (typeof budgetPolicies)[number];

/** The authors' menu of tree sizes. */
export const staticTreeSizes = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32] as const;

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
   * Whether drafting one row pays for the drafting itself: a row that accepts
   * `expectedAccepted` draft tokens per drafted step saves that many row-steps
   * (each worth this batch's per-row share of a step); drafting it costs the
   * measured drafting time per row. Asked before drafting, so rows that
   * cannot pay (a hot sampled row, a text the drafters do not know) skip the
   * drafting CPU time, which at batch 8+ on a CPU exceeds a whole decode
   * row-step. Static policy and unmeasured methods: always.
   */
  rowPaysForDrafting(batch: number, expectedAccepted: number, maxPast: number, method = 'default'): boolean {
    if (this.options.policy === 'static') return true;
    const draftMs = this.draftMsPerRow(method);
    if (draftMs === undefined) return true;
    const rows = Math.max(1, batch);
    const rowMs = this.stepMs(rows, 1, rows, maxPast) / rows;
    return expectedAccepted * rowMs > draftMs;
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
    if (this.scratch.length < batch) {
      this.scratch = new Int32Array(batch * 2);
      this.heap = new RowHeap(batch * 2);
    }
    // Two candidate allocations, the better one wins: a uniform prefix (right
    // when the runtime pays for the padded batch) and a greedy by node
    // probability (right when it pays per token).
    const uniform = this.uniformPrefix(rows, out, maxPast);
    const greedy = this.greedyByProbability(rows, this.scratch, maxPast);
    if (greedy > uniform) out.set(this.scratch.subarray(0, batch));

    // Would this step have paid for its drafting too? (Sunk now; it decides the
    // next steps.) Judged on the rows that drafted: rows the scheduler kept from
    // drafting (resting, unpaid) say nothing about whether drafting pays, and
    // counting them as drafting for nothing switched speculation off for good.
    let draftedRows = 0;
    for (let r = 0; r < batch; r++) if (rows[r].probs !== null) draftedRows++;
    if (draftedRows === 0) return;
    let maxChain = 0;
    let sumChain = 0;
    let maxTokens = 0;
    let totalTokens = 0;
    let gain = 0;
    for (let r = 0; r < batch; r++) {
      const row = rows[r];
      maxChain = Math.max(maxChain, row.chainLength);
      sumChain += row.chainLength;
      const t = row.chainLength + out[r];
      maxTokens = Math.max(maxTokens, t);
      totalTokens += t;
      for (let i = 1; i <= out[r]; i++) gain += row.scale * row.probs![i];
    }
    const plain = batch / this.stepMs(batch, maxChain, sumChain, maxPast);
    const spec = (batch + gain) / (this.stepMs(batch, maxTokens, totalTokens, maxPast) + (this.draftMsPerRow(method) ?? 0) * draftedRows);
    const ratio = this.advantageOf(method).ratio;
    const b = bucketOf(batch);
    ratio[b] = ratio[b] * 0.8 + (spec / plain) * 0.2;
  }

  /**
   * One length for every decode row: the first s nodes of each row's draft
   * (fewer where a row has fewer), s chosen for the decode rows' expected
   * emitted tokens per ms with every one of them paying for s + 1 tokens.
   * For table chains in wide batches (Scheduler.iterate): there the pass is
   * padded to its longest row and, rows being alike, never split, so a row's
   * shorter draft saves nothing. Trimming rows one by one, as `allocate`
   * does, assumes it does (the curve is fitted with uneven batches run as
   * split passes): at concurrency 32 it left 2.11 tokens per step in passes
   * padded for 4, at 0.96-0.98x of `off`, against 2.31 and 1.12x with one
   * length for all. A row feeding its prompt (chainLength > 1) gets none: it
   * runs in a pass of its own and its draft would be judged by its prompt.
   * Returns s.
   */
  allocateUniform(rows: readonly BudgetRow[], out: Int32Array, maxPast = 128): number {
    const batch = rows.length;
    let cap = 0;
    let decode = 0;
    for (const row of rows) {
      if (row.chainLength !== 1) continue;
      decode++;
      cap = Math.max(cap, Math.min(row.available, this.options.maxNodes));
    }
    let bestS = 0;
    let bestRate = -1;
    let gain = 0;
    for (let s = 0; s <= cap; s++) {
      for (let r = 0; r < batch; r++) {
        const row = rows[r];
        if (s > 0 && row.chainLength === 1 && s <= row.available && row.probs) gain += row.scale * row.probs[s];
      }
      const rate = (decode + gain) / this.stepMs(decode, 1 + s, decode * (1 + s), maxPast);
      if (rate > bestRate * 1.0005) {
        bestRate = rate;
        bestS = s;
      }
    }
    for (let r = 0; r < batch; r++) out[r] = rows[r].chainLength === 1 ? Math.min(bestS, rows[r].available) : 0;
    return bestS;
  }

  private scratch = new Int32Array(0);
  private heap = new RowHeap(0);

  /** Expected emitted tokens per ms of an allocation. */
  private rate(rows: readonly BudgetRow[], take: Int32Array, maxPast: number): number {
    let gain = 0;
    let maxTokens = 0;
    let totalTokens = 0;
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      for (let i = 1; i <= take[r]; i++) gain += row.scale * row.probs![i];
      const t = row.chainLength + take[r];
      totalTokens += t;
      if (t > maxTokens) maxTokens = t;
    }
    return (rows.length + gain) / this.stepMs(rows.length, maxTokens, totalTokens, maxPast);
  }

  private uniformPrefix(rows: readonly BudgetRow[], out: Int32Array, maxPast: number): number {
    const batch = rows.length;
    let cap = 0;
    for (const row of rows) cap = Math.max(cap, Math.min(row.available, this.options.maxNodes));
    let bestS = 0;
    let bestRate = -1;
    let gain = 0;
    for (let s = 0; s <= cap; s++) {
      let maxTokens = 0;
      let totalTokens = 0;
      for (let r = 0; r < batch; r++) {
        const row = rows[r];
        const take = Math.min(s, row.available);
        if (s > 0 && take === s && row.probs) gain += row.scale * row.probs[s];
        const t = row.chainLength + take;
        totalTokens += t;
        if (t > maxTokens) maxTokens = t;
      }
      const rate = (batch + gain) / this.stepMs(batch, maxTokens, totalTokens, maxPast);
      if (rate > bestRate * 1.0005) {
        bestRate = rate;
        bestS = s;
      }
    }
    // Trim nodes that do not pay for their own per-token cost.
    const threshold = this.costModel.coefficients.perToken * bestRate;
    for (let r = 0; r < batch; r++) {
      const row = rows[r];
      let take = Math.min(bestS, row.available);
      if (threshold > 0 && row.probs) {
        let kept = 0;
        while (kept < take && row.scale * row.probs[kept + 1] > threshold) kept++;
        take = kept;
      }
      out[r] = take;
    }
    return this.rate(rows, out, maxPast);
  }

  /**
   * Marginal allocation: repeatedly give the next node to the request whose
   * next node is likeliest, while that raises the batch's tokens per ms; a
   * request whose next node does not pay stops growing.
   */
  private greedyByProbability(rows: readonly BudgetRow[], take: Int32Array, maxPast: number): number {
    const batch = rows.length;
    const heap = this.heap;
    heap.clear();
    let maxTokens = 0;
    let totalTokens = 0;
    for (let r = 0; r < batch; r++) {
      const row = rows[r];
      take[r] = 0;
      totalTokens += row.chainLength;
      if (row.chainLength > maxTokens) maxTokens = row.chainLength;
      if (row.available > 0 && row.probs && this.options.maxNodes > 0) heap.push(r, row.scale * row.probs[1]);
    }
    let gain = 0;
    let rate = batch / this.stepMs(batch, maxTokens, totalTokens, maxPast);
    while (heap.size > 0) {
      const r = heap.pop();
      const row = rows[r];
      const p = row.scale * row.probs![take[r] + 1];
      const t = row.chainLength + take[r] + 1;
      const nextMax = t > maxTokens ? t : maxTokens;
      const nextRate = (batch + gain + p) / this.stepMs(batch, nextMax, totalTokens + 1, maxPast);
      if (nextRate <= rate) continue;
      rate = nextRate;
      gain += p;
      maxTokens = nextMax;
      totalTokens++;
      take[r]++;
      if (take[r] < row.available && take[r] < this.options.maxNodes) heap.push(r, row.scale * row.probs![take[r] + 1]);
    }
    return rate;
  }
}

function bucketOf(batch: number): number {
  return Math.min(15, 31 - Math.clz32(Math.max(1, batch)));
}

/** Max-heap of row indices keyed by their next node's probability. */
class RowHeap {
  private readonly rows: Int32Array;
  private readonly keys: Float64Array;
  size = 0;

  constructor(capacity: number) {
    this.rows = new Int32Array(capacity);
    this.keys = new Float64Array(capacity);
  }

  clear(): void {
    this.size = 0;
  }

  push(row: number, key: number): void {
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.keys[parent] >= key) break;
      this.rows[i] = this.rows[parent];
      this.keys[i] = this.keys[parent];
      i = parent;
    }
    this.rows[i] = row;
    this.keys[i] = key;
  }

  pop(): number {
    const top = this.rows[0];
    const lastRow = this.rows[--this.size];
    const lastKey = this.keys[this.size];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && this.keys[child + 1] > this.keys[child]) child++;
      if (this.keys[child] <= lastKey) break;
      this.rows[i] = this.rows[child];
      this.keys[i] = this.keys[child];
      i = child;
    }
    this.rows[i] = lastRow;
    this.keys[i] = lastKey;
    return top;
  }
}
