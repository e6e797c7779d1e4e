/**
 * The median of the last `size` samples: a running estimate that one outlier
 * (a stalled step) cannot move. Allocation-free after construction.
 */
export class RecentMedian {
  private readonly ring: Float64Array;
  private readonly sorted: Float64Array;
  private count = 0;
  private next = 0;
  private median = 0;

  /** `value` stays undefined until `minSamples` samples have come. */
  constructor(
    size: number,
    private readonly minSamples = 1,
  ) {
    this.ring = new Float64Array(size);
    this.sorted = new Float64Array(size);
  }

  add(x: number): void {
    this.ring[this.next] = x;
    this.next = (this.next + 1) % this.ring.length;
    if (this.count < this.ring.length) this.count++;
    const n = this.count;
    const a = this.sorted;
    // Insertion sort of at most `size` values: cheaper than a typed-array sort call at this size.
    for (let i = 0; i < n; i++) {
      const v = this.ring[i];
      let j = i - 1;
      while (j >= 0 && a[j] > v) {
        a[j + 1] = a[j];
        j--;
      }
      a[j + 1] = v;
    }
    this.median = n % 2 === 1 ? a[(n - 1) >> 1] : (a[n / 2 - 1] + a[n / 2]) / 2;
  }

  get value(): number | undefined {
    return this.count < Math.max(1, this.minSamples) ? undefined : this.median;
  }
}

