/**
 * A binary max-heap of candidates keyed by probability, in typed arrays: each
 * entry is (prob, a, b, c) with three integer payloads whose meaning belongs to
 * the caller (e.g. source node, parent in the output tree, match length).
 * The heap grows by doubling (rarely, after warm-up); callers bound the work
 * by the number of pops.
 */
export class CandidateHeap {
  private prob: Float64Array;
  private a: Int32Array;
  private b: Int32Array;
  private c: Int32Array;
  size = 0;
  /** Payload of the entry last returned by pop(). */
  topProb = 0;
  topA = 0;
  topB = 0;
  topC = 0;

  constructor(capacity = 256) {
    const n = Math.max(4, capacity);
    this.prob = new Float64Array(n);
    this.a = new Int32Array(n);
    this.b = new Int32Array(n);
    this.c = new Int32Array(n);
  }

  clear(): void {
    this.size = 0;
  }

  push(prob: number, a: number, b: number, c: number): void {
    if (this.size === this.prob.length) this.grow();
    let i = this.size++;
    const P = this.prob;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (P[parent] >= prob) break;
      P[i] = P[parent];
      this.a[i] = this.a[parent];
      this.b[i] = this.b[parent];
      this.c[i] = this.c[parent];
      i = parent;
    }
    P[i] = prob;
    this.a[i] = a;
    this.b[i] = b;
    this.c[i] = c;
  }

  /** Removes the most probable entry into topProb/topA/topB/topC; false when empty. */
  pop(): boolean {
    if (this.size === 0) return false;
    const P = this.prob;
    this.topProb = P[0];
    this.topA = this.a[0];
    this.topB = this.b[0];
    this.topC = this.c[0];
    const n = --this.size;
    if (n === 0) return true;
    const prob = P[n];
    const a = this.a[n];
    const b = this.b[n];
    const c = this.c[n];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && P[child + 1] > P[child]) child++;
      if (P[child] <= prob) break;
      P[i] = P[child];
      this.a[i] = this.a[child];
      this.b[i] = this.b[child];
      this.c[i] = this.c[child];
      i = child;
    }
    P[i] = prob;
    this.a[i] = a;
    this.b[i] = b;
    this.c[i] = c;
    return true;
  }

  private grow(): void {
    const n = this.prob.length * 2;
    const p = new Float64Array(n);
    p.set(this.prob);
    this.prob = p;
    const a = new Int32Array(n);
    a.set(this.a);
    this.a = a;
    const b = new Int32Array(n);
    b.set(this.b);
    this.b = b;
    const c = new Int32Array(n);
    c.set(this.c);
    this.c = c;
  }
}
