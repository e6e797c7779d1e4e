/**
 * A measured guard over the budget: per speculation method and batch-size
 * bucket (powers of two),
 * it compares the pool's real throughput (emitted tokens per ms of a whole
 * scheduler cycle: drafting, forward pass, acceptance, streaming) of steps
 * that speculate against steps that do not, and keeps speculation on only
 * where it wins. The loser is still tried for a block of steps once every
 * `exploreEvery` blocks (speculation, when it loses: 3 times less often
 * beyond a 25% deficit; plain decoding, when it loses: the rarer the more it
 * loses, 10 times at a 50% deficit), so the decision follows the load. This is what makes "speculation never lowers
 * throughput" hold even where the cost model or the drafters' estimates are
 * wrong, or drafting itself is what costs.
 */
const BUCKETS = 12;
/** Samples per arm before the comparison is trusted. */
const WARMUP_SAMPLES = 6;
/** Consecutive steps an arm runs when it is being (re)tested. */
const BLOCK = 4;
/** Speculation is preferred only when it measures this much faster. */
const TIE_MARGIN = 1.05;

export interface GovernorBucketState {
  specRate: number;
  plainRate: number;
  specSamples: number;
  plainSamples: number;
}

/** One comparison: the decayed sums of each arm, per batch-size bucket. */
class ArmStats {
  // Decayed sums of tokens and of ms per arm: throughput is their ratio (a
  // mean of per-cycle ratios would favour the arm with noisier cycles).
  readonly specTokens = new Float64Array(BUCKETS);
  readonly specMs = new Float64Array(BUCKETS);
  readonly plainTokens = new Float64Array(BUCKETS);
  readonly plainMs = new Float64Array(BUCKETS);
  readonly specSamples = new Int32Array(BUCKETS);
  readonly plainSamples = new Int32Array(BUCKETS);
  readonly counter = new Int32Array(BUCKETS);
}

export class SpeculationGovernor {
  /** Per speculation method: how well speculation pays depends on the drafter. */
  private readonly stats = new Map<string, ArmStats>();
  /**
   * Plain decoding is one arm for every method (its rate at a batch size is
   * the pool's, whoever's rows they are), fed by every plain cycle, those of
   * `off` batches included. Kept per method, the plain arm of a method whose
   * speculation wins was sampled only in rare probe blocks, and cycles
   * that paid for the speculating cycles before them (collection of their
   * garbage, tries pushed meanwhile) kept its rate ~15% low, enough to keep
   * speculation on at batch 16-64 where it lost 10-20% end to end.
   */
  private readonly plain = new ArmStats();
  private lastArm = false;

  constructor(
    private readonly exploreEvery = 10,
    /** Weight of a new observation in the running sums. */
    private readonly alpha = 0.1,
  ) {}

  private bucket(batch: number): number {
    return Math.min(BUCKETS - 1, 31 - Math.clz32(Math.max(1, batch)));
  }

  private of(key: string): ArmStats {
    let s = this.stats.get(key);
    if (!s) {
      s = new ArmStats();
      this.stats.set(key, s);
    }
    return s;
  }

  /** Whether a step over `batch` rows, mostly of method `key`, should speculate. */
  decide(batch: number, key = 'default'): boolean {
    const st = this.of(key);
    const pl = this.plain;
    const b = this.bucket(batch);
    const n = st.counter[b]++;
    // Arms run in blocks: switching arms has a cost of its own (runtime
    // buffers, caches), so it should happen rarely, and the first cycle after
    // a switch is not counted for either arm (see record).
    if (st.specSamples[b] < WARMUP_SAMPLES || pl.plainSamples[b] < WARMUP_SAMPLES) {
      return n % (2 * BLOCK) < BLOCK;
    }
    const spec = st.specTokens[b] / st.specMs[b];
    const plain = pl.plainTokens[b] / pl.plainMs[b];
    // Ties go to plain decoding: speculation must clearly win to be kept (it
    // also costs what a cycle does not show: tail latency, the edge's work).
    const preferSpec = spec > plain * TIE_MARGIN;
    // Probe the losing arm often while the two are close, rarely once it clearly loses.
    const margin = Math.abs(spec - plain) / Math.max(1e-9, Math.max(spec, plain));
    // Every probe of the loser costs its deficit. Plain decoding as the loser
    // is probed the less often the more it loses (10 times less at a 50%
    // deficit): at batch 1 it runs at under half the speed of speculation,
    // and probing it every 10-30 blocks alone cost several percent of
    // throughput. Speculation as the loser keeps the old schedule (3 times
    // rarer beyond a 25% deficit): its estimate can be wrong-low (cold
    // drafting code), and rarer probes left it off at batch 1 for seconds.
    const slowdown = preferSpec ? Math.min(10, Math.max(1, margin / 0.05)) : margin > 0.25 ? 3 : 1;
    const period = BLOCK * Math.round(this.exploreEvery * slowdown);
    const explore = n % period < BLOCK;
    return explore ? !preferSpec : preferSpec;
  }

  /** One finished cycle: `tokens` emitted in `ms` (`key` = the batch's method; any, for a plain cycle). */
  record(batch: number, speculated: boolean, tokens: number, ms: number, key = 'default'): void {
    if (ms <= 0) return;
    const switched = speculated !== this.lastArm;
    this.lastArm = speculated;
    if (switched) return;
    const st = speculated ? this.of(key) : this.plain;
    const b = this.bucket(batch);
    // The arm that is losing is only seen in probe blocks, so its estimate is
    // mostly old (cold first cycles: drafters being built, code not yet
    // optimised); its fresh samples weigh 3 times more, or one early bad
    // reading kept speculation off at batch 3-7 where it measured 14-16%
    // faster per cycle.
    const mine = this.stats.get(key);
    const specRate = mine ? mine.specTokens[b] / mine.specMs[b] : NaN;
    const plainRate = this.plain.plainTokens[b] / this.plain.plainMs[b];
    const losing = speculated ? specRate < plainRate * TIE_MARGIN : specRate > plainRate * TIE_MARGIN;
    const keep = 1 - (losing ? Math.min(0.5, 3 * this.alpha) : this.alpha);
    // One stalled cycle (garbage collection, a burst of requests to read)
    // counts as at most 3 times slower than the arm's rate: with decayed sums
    // an outlier otherwise held a rarely probed arm down for dozens of probes.
    const rate = speculated ? st.specTokens[b] / st.specMs[b] : st.plainTokens[b] / st.plainMs[b];
    const samples = speculated ? st.specSamples[b] : st.plainSamples[b];
    if (samples >= WARMUP_SAMPLES && rate > 0 && tokens > 0) ms = Math.min(ms, (3 * tokens) / rate);
    if (speculated) {
      st.specTokens[b] = st.specTokens[b] * keep + tokens;
      st.specMs[b] = st.specMs[b] * keep + ms;
      st.specSamples[b]++;
    } else {
      st.plainTokens[b] = st.plainTokens[b] * keep + tokens;
      st.plainMs[b] = st.plainMs[b] * keep + ms;
      st.plainSamples[b]++;
    }
  }

  /** Every (method, bucket) measured so far; `batch` is the bucket's lower bound. */
  snapshot(): { method: string; batch: number; state: GovernorBucketState }[] {
    const out: { method: string; batch: number; state: GovernorBucketState }[] = [];
    for (const method of this.stats.keys()) {
      for (let b = 0; b < BUCKETS; b++) {
        const state = this.state(1 << b, method);
        if (state.specSamples + state.plainSamples > 0) out.push({ method, batch: 1 << b, state });
      }
    }
    return out;
  }

  state(batch: number, key = 'default'): GovernorBucketState {
    const st = this.of(key);
    const pl = this.plain;
    const b = this.bucket(batch);
    return {
      specRate: st.specMs[b] > 0 ? st.specTokens[b] / st.specMs[b] : 0,
      plainRate: pl.plainMs[b] > 0 ? pl.plainTokens[b] / pl.plainMs[b] : 0,
      specSamples: st.specSamples[b],
      plainSamples: pl.plainSamples[b],
    };
  }
}
