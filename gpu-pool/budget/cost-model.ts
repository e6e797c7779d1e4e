/**
 * Forward-pass time as a function of the batch's shape, fitted from a
 * calibration grid measured on the pool's own runner:
 *
 *   ms ≈ fixed + perRow·B + perPaddedToken·B·T + perToken·ΣT + perTokenPair·B·T²
 *        + perPastToken·B·T·P + perPastRow·B·P
 *
 * (T = longest row's new tokens, P = longest cached past.) `B·T` is what a
 * padded batch computes, `ΣT` what a packed one does, `B·T²` and `B·T·P` the
 * new tokens' attention (mask and scores) over the tree and the past, `B·P`
 * moving the past in; the fit decides which ones the runtime pays for. Coefficients are kept
 * non-negative (a feature whose least-squares weight comes out negative is
 * dropped and the rest refitted), so more tokens never look cheaper. The fit
 * minimises relative error, so the small batches where speculation pays most
 * are modelled as well as the large ones.
 */
export interface CostSample {
  rows: number;
  /** Longest row (new tokens, root included). */
  maxTokens: number;
  /** Sum of new tokens over rows. */
  totalTokens: number;
  /** Longest cached past of the batch's sequences. */
  maxPast: number;
  ms: number;
}

export interface CostCoefficients {
  fixed: number;
  perRow: number;
  perPaddedToken: number;
  perToken: number;
  perTokenPair: number;
  perPastToken: number;
  perPastRow: number;
}

export class CostModel {
  constructor(readonly coefficients: CostCoefficients) {}

  /** Predicted step time in ms. */
  stepMs(rows: number, maxTokens: number, totalTokens: number, maxPast: number): number {
    const c = this.coefficients;
    const padded = rows * maxTokens;
    return (
      c.fixed +
      c.perRow * rows +
      c.perPaddedToken * padded +
      c.perToken * totalTokens +
      c.perTokenPair * padded * maxTokens +
      c.perPastToken * padded * maxPast +
      c.perPastRow * rows * maxPast
    );
  }

  /**
   * The "knee" in tokens: the batch size (one token per row, a decode batch)
   * at which a step costs twice the single-row step. Below it extra tokens are
   * nearly free; the authors' static rule divides it by the batch size.
   */
  kneeTokens(past = 128): number {
    const base = this.stepMs(1, 1, 1, past);
    const perToken = this.stepMs(2, 1, 2, past) - base;
    if (perToken <= 0) return 1024;
    return Math.max(8, Math.min(1024, Math.round(base / perToken) + 1));
  }

  /**
   * What one more session run costs, in padded tokens: the curve's fixed
   * cost of a pass over what a slot of a pass costs (every slot is computed,
   * padded or not). The runner splits a step into two passes when that saves
   * more padded tokens than this (padding-split.ts). On the 2-core CPU 15,
   * against ~12 measured on the runner (7 plain rows and one of 3, 5 or 9
   * tokens at a past of 128: 0.65 / 0.93 / 1.44 ms as one pass, 0.61 / 0.67 /
   * 0.72 ms as two); the fixed guess of 32 it replaces kept a 4-node tree
   * from running apart from 7 plain rows.
   */
  passOverheadTokens(past = 128): number {
    const c = this.coefficients;
    const perSlot = c.perToken + c.perPaddedToken + c.perPastToken * past;
    if (!(perSlot > 0)) return Infinity;
    return Math.max(1, Math.min(1024, Math.round(c.fixed / perSlot)));
  }

  static fit(samples: readonly CostSample[]): CostModel {
    const features = (s: CostSample): number[] => {
      const padded = s.rows * s.maxTokens;
      return [1, s.rows, padded, s.totalTokens, padded * s.maxTokens, padded * s.maxPast, s.rows * s.maxPast];
    };
    let active = [0, 1, 2, 3, 4, 5, 6];
    for (;;) {
      // Relative error (rows scaled by 1/ms): small batches matter as much as big ones.
      const weights = leastSquares(
        samples.map((s) => active.map((f) => features(s)[f] / s.ms)),
        samples.map(() => 1),
      );
      const negative = weights.findIndex((w, i) => w < 0 && active[i] !== 0);
      if (negative === -1 || active.length === 1) {
        const full = [0, 0, 0, 0, 0, 0, 0];
        active.forEach((f, i) => (full[f] = Math.max(0, weights[i])));
        return new CostModel({
          fixed: full[0],
          perRow: full[1],
          perPaddedToken: full[2],
          perToken: full[3],
          perTokenPair: full[4],
          perPastToken: full[5],
          perPastRow: full[6],
        });
      }
      active = active.filter((_, i) => i !== negative);
    }
  }
}

/** Ordinary least squares via the normal equations (a handful of features). */
function leastSquares(x: number[][], y: number[]): number[] {
  const k = x[0]?.length ?? 0;
  const a = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
  for (let r = 0; r < x.length; r++) {
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) a[i][j] += x[r][i] * x[r][j];
      a[i][k] += x[r][i] * y[r];
    }
  }
  // Small ridge term keeps collinear grids solvable.
  for (let i = 0; i < k; i++) a[i][i] += 1e-9;
  for (let col = 0; col < k; col++) {
    let pivot = col;
    for (let r = col + 1; r < k; r++) if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) pivot = r;
    [a[col], a[pivot]] = [a[pivot], a[col]];
    const d = a[col][col];
    if (Math.abs(d) < 1e-15) continue;
    for (let j = col; j <= k; j++) a[col][j] /= d;
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = a[r][col];
      if (f === 0) continue;
      for (let j = col; j <= k; j++) a[r][j] -= f * a[col][j];
    }
  }
  return a.map((row) => row[k]);
}
