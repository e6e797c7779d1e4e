/**
 * How much of a predicted output (OpenAI's `prediction`) the completion
 * followed, for `usage.completion_tokens_details`: `accepted_prediction_tokens`
 * are the prediction's tokens that appear in the completion, in order;
 * `rejected_prediction_tokens` the rest of it.
 *
 * The count is a common subsequence found in one pass (not the longest one,
 * whose O(n·m) table would cost up to 8,192 × the completion's length on the
 * edge's per-request path): the completion is walked alongside the
 * prediction; where they part, the nearest place both agree again (3 tokens
 * alike, the fewest tokens skipped on the two sides together) is found
 * through the prediction's 3-grams, so an edit (a token changed, text
 * inserted or left out) costs only the tokens it touches. The same measure as the drafts the pool took from the prediction:
 * they too resume at the first later place where the text matches.
 */

/** Tokens an anchor must agree on before the walk jumps ahead in the prediction. */
const ANCHOR = 3;
/** How far ahead in the completion a place to agree again is looked for, once they part. */
const RESYNC = 64;
export interface PredictionMatch {
  accepted: number;
  rejected: number;
}

/** A hash of the 3 tokens at `at`; equal tokens, equal hashes. */
function anchorHash(ids: readonly number[], at: number): number {
  return Math.imul(Math.imul(ids[at], 0x9e3779b1) ^ ids[at + 1], 0x85ebca6b) ^ Math.imul(ids[at + 2], 0xc2b2ae35);
}

/**
 * The prediction's 3-grams as chained hash buckets in two typed arrays (no
 * object per position): `first[bucket]` is the lowest start in it, `next[start]`
 * the one after; -1 ends a chain.
 */
class AnchorIndex {
  private readonly first: Int32Array;
  private readonly next: Int32Array;
  private readonly mask: number;

  constructor(private readonly prediction: readonly number[]) {
    const starts = Math.max(0, prediction.length - ANCHOR + 1);
    let size = 16;
    while (size < starts * 2) size *= 2;
    this.mask = size - 1;
    this.first = new Int32Array(size).fill(-1);
    this.next = new Int32Array(starts);
    // Backwards, so that every chain runs in ascending order.
    for (let at = starts - 1; at >= 0; at--) {
      const bucket = anchorHash(prediction, at) & this.mask;
      this.next[at] = this.first[bucket];
      this.first[bucket] = at;
    }
  }

  /**
   * The first start at or after `from` whose 3 tokens equal output's at `at`;
   * -1 if none. `from` never decreases from one call to the next (the walk
   * only goes forward in the prediction), so the starts before it are cut off
   * their chain for good: walked past on every call, a prediction full of one
   * repeated phrase made the match quadratic (8,192 tokens: ~0.5 s).
   */
  find(output: readonly number[], at: number, from: number): number {
    const prediction = this.prediction;
    const a = output[at];
    const b = output[at + 1];
    const c = output[at + 2];
    const bucket = anchorHash(output, at) & this.mask;
    let start = this.first[bucket];
    while (start >= 0 && start < from) start = this.next[start];
    this.first[bucket] = start;
    for (; start >= 0; start = this.next[start]) {
      if (prediction[start] === a && prediction[start + 1] === b && prediction[start + 2] === c) return start;
    }
    return -1;
  }
}

export function matchPrediction(prediction: readonly number[], output: readonly number[]): PredictionMatch {
  let accepted = 0;
  let p = 0;
  let index: AnchorIndex | null = null;
  let searchedP = -1;
  let searchedTo = 0;
  for (let i = 0; i < output.length && p < prediction.length; ) {
    if (output[i] === prediction[p]) {
      accepted++;
      i++;
      p++;
      continue;
    }
    index ??= new AnchorIndex(prediction);
    // Where the two agree again: of the anchors within RESYNC tokens of the
    // output, the one that skips the fewest tokens on both sides together.
    // (The first anchor alone can be a common phrase far ahead, and jumping
    // there would reject all the prediction between.)
    let bestSkip = Infinity;
    let bestI = -1;
    let bestP = -1;
    // Output positions already searched for this p hold no anchor: start past them.
    let a = p === searchedP && searchedTo > i ? searchedTo - i : 0;
    for (; a < RESYNC && a < bestSkip && i + a + ANCHOR <= output.length; a++) {
      const next = index.find(output, i + a, p);
      if (next >= 0 && a + next - p < bestSkip) {
        bestSkip = a + next - p;
        bestI = i + a;
        bestP = next;
      }
    }
    if (bestI < 0) {
      searchedP = p;
      searchedTo = i + a;
    }
    // A token inserted, left out or changed, with the next one alike: as
    // likely as an anchor that skips as much, and dense edits leave no anchors.
    if (bestSkip > 1 && i + 1 < output.length && output[i + 1] === prediction[p]) {
      bestSkip = 1; // one inserted
      bestI = i + 1;
      bestP = p;
    } else if (bestSkip > 1 && p + 1 < prediction.length && output[i] === prediction[p + 1]) {
      bestSkip = 1; // one left out
      bestI = i;
      bestP = p + 1;
    } else if (bestSkip > 2 && i + 1 < output.length && p + 1 < prediction.length && output[i + 1] === prediction[p + 1]) {
      bestI = i + 1; // one changed
      bestP = p + 1;
    }
    if (bestI >= 0) {
      i = bestI;
      p = bestP;
    } else {
      i += 1;
    }
  }
  return { accepted, rejected: prediction.length - accepted };
}
