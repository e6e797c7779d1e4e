/**
 * Metrics the scheduler updates every step, row or token: plain numbers and
 * typed arrays on the hot path, folded into their prom-client metric when
 * it is read (a scrape, `get()`), through prom-client's `collect()` hook.
 *
 * prom-client's own inc/observe cost ~0.2-0.5 µs each (a labelled inc builds
 * and looks up a label key and checks the labels; an observe allocates), and
 * a step made a dozen of them: 3-4 µs a step, 1-2 µs per output token at
 * concurrency 1 (review h148). What a scrape shows is unchanged: the same
 * series, in the same order, with the same values (the sums are added in the
 * same order, so they are the same doubles).
 */
import { Counter, Histogram, type Registry } from 'prom-client';

type Registers = Registry[];

/** What `get()` gives: prom-client's metric object, read after the fold. */
type MetricReading = Awaited<ReturnType<Counter['get']>>;

/*
 * prom-client's checks on a value, kept at the call (a bad value folded in
 * later would fail every scrape after it). The hot paths test with two
 * comparisons and build the error out of line: small methods are inlined
 * into the scheduler's, and a call that is not boxes its number argument.
 */
function badIncrement(value: number): Error {
  return Number.isFinite(value) ? new Error('It is not possible to decrease a counter') : badObservation(value);
}

function badObservation(value: number): Error {
  return new TypeError(`Value is not a valid number: ${value}`);
}

/** An unlabelled counter. */
export class StepCounter {
  private total = 0;
  private readonly counter: Counter;

  constructor(config: { name: string; help: string; registers: Registers }) {
    const self = this;
    this.counter = new Counter({
      ...config,
      // reset() then one inc: the exposed value is exactly the running total.
      collect() {
        this.reset();
        this.inc(self.total);
      },
    });
  }

  inc(value = 1): void {
    if (!(value >= 0 && value < Infinity)) throw badIncrement(value);
    this.total += value;
  }

  get(): Promise<MetricReading> {
    return this.counter.get();
  }
}

/** One label value of a `StepCounterVec`, bound once (as prom-client's `labels()` child). */
export interface StepCounterChild {
  inc(value?: number): void;
}

/**
 * A counter with one label over a fixed set of values. A series appears at
 * its value's first increment (even by 0), as prom-client makes it, and
 * series are exposed in that order; `zeroFromStart` shows every one at 0
 * from the start, in the given order.
 */
export class StepCounterVec<V extends string> {
  private readonly totals: Float64Array;
  /** Indices of the values incremented so far, in the order of their first increment (`seen`: which are). */
  private readonly order: Int32Array;
  private readonly seen: Uint8Array;
  private shown = 0;
  private readonly counter: Counter;
  private readonly children: StepCounterChild[];

  constructor(config: {
    name: string;
    help: string;
    registers: Registers;
    labelName: string;
    values: readonly V[];
    zeroFromStart?: boolean;
    /** Runs at each read, before the fold (e.g. to count an idle stretch up to now). */
    beforeRead?: () => void;
  }) {
    const { labelName, values, beforeRead } = config;
    this.totals = new Float64Array(values.length);
    this.order = new Int32Array(values.length);
    this.seen = new Uint8Array(values.length);
    const labelSets = values.map((v) => ({ [labelName]: v }));
    const self = this;
    this.counter = new Counter({
      name: config.name,
      help: config.help,
      labelNames: [labelName],
      registers: config.registers,
      collect() {
        beforeRead?.();
        this.reset();
        for (let k = 0; k < self.shown; k++) {
          const i = self.order[k];
          this.inc(labelSets[i], self.totals[i]);
        }
      },
    });
    this.children = values.map((_, i) => ({ inc: (value = 1) => this.add(i, value) }));
    if (config.zeroFromStart) for (let i = 0; i < values.length; i++) this.add(i, 0);
  }

  /** The value at `index` of the constructor's `values`, bound. */
  child(index: number): StepCounterChild {
    return this.children[index];
  }

  /** Adds `value` to the series of `values[index]` (no label object, no lookup). */
  add(index: number, value = 1): void {
    if (!(value >= 0 && value < Infinity)) throw badIncrement(value);
    if (this.seen[index] === 0) this.show(index);
    this.totals[index] += value;
  }

  private show(index: number): void {
    this.seen[index] = 1;
    this.order[this.shown++] = index;
  }

  get(): Promise<MetricReading> {
    return this.counter.get();
  }
}

/**
 * One series of prom-client's Histogram as it keeps it (lib/histogram.js,
 * createBaseValues): per-bucket counts, not cumulative, keyed by upper
 * bound (observations past the last bound are only in `count`), their sum
 * and count. Its export makes the cumulative buckets, +Inf, _sum and _count.
 */
interface PromHistogramSeries {
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/** The unlabelled series of a prom-client Histogram; throws where prom-client no longer keeps it as this module expects. */
function seriesOf(histogram: Histogram, bounds: readonly number[]): PromHistogramSeries {
  const map = (histogram as unknown as { hashMap?: Record<string, PromHistogramSeries | undefined> }).hashMap;
  const series = map?.[''];
  const keys = series?.bucketValues ? Object.keys(series.bucketValues) : [];
  if (!series || typeof series.sum !== 'number' || typeof series.count !== 'number' || keys.length !== bounds.length || bounds.some((b) => !(String(b) in series.bucketValues))) {
    throw new Error(`prom-client's Histogram does not keep its series as step-metrics.ts expects (has its version changed?)`);
  }
  return series;
}

/** An unlabelled histogram. */
export class StepHistogram {
  private readonly bounds: Float64Array;
  /** Observations per bucket (value ≤ bound, first such bound), not cumulative; the last slot is past every bound. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;
  private readonly histogram: Histogram;

  constructor(config: { name: string; help: string; registers: Registers; buckets: readonly number[] }) {
    const buckets = [...config.buckets];
    this.bounds = Float64Array.from(buckets);
    this.counts = new Float64Array(buckets.length + 1);
    const self = this;
    this.histogram = new Histogram({
      name: config.name,
      help: config.help,
      buckets,
      registers: config.registers,
      collect() {
        // A reset (the histogram's, or its registry's) drops the series: made again, at zero, before it is written.
        if ((this as unknown as { hashMap?: Record<string, unknown> }).hashMap?.[''] === undefined) this.zero({});
        const series = seriesOf(this, buckets);
        for (let i = 0; i < buckets.length; i++) series.bucketValues[buckets[i]] = self.counts[i];
        series.sum = self.sum;
        series.count = self.count;
      },
    });
    // At construction, not at the first scrape: a prom-client that changed fails the tests, not a running pool's /metrics.
    seriesOf(this.histogram, buckets);
  }

  observe(value: number): void {
    if (!(value > -Infinity && value < Infinity)) throw badObservation(value);
    // prom-client's rule: the first bound the value is at or under (a linear scan; steps' values sit in the first buckets).
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }

  get(): ReturnType<Histogram['get']> {
    return this.histogram.get();
  }
}
