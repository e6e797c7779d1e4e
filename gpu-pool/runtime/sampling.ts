/**
 * Token selection: argmax, temperature / min-p / top-k / top-p to a distribution, and
 * a seeded generator, so a (seed, logits) pair always gives the same token.
 */
import { GUMBEL_MAX, GUMBEL_TIER_BOUND, gumbelOf, gumbelTier, type GumbelNoise } from '../../shared/sampling/gumbel-noise';

export interface SamplingOptions {
  temperature: number;
  /** 1 = no nucleus cut. */
  topP: number;
  /** 0 = no top-k cut. */
  topK: number;
  /** vLLM's min-p: tokens less likely than this times the likeliest are cut, before top-k / top-p (0 or absent = none). */
  minP?: number;
}

/**
 * xoshiro128** seeded through splitmix32 from the low and high halves of a
 * 53-bit integer seed. Small, fast, and the same on every platform.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a number, not ${seed}`);
    const s = Math.floor(Math.abs(seed));
    let x = (s >>> 0) ^ Math.floor(s / 2 ** 32);
    const mix = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    // Fold the high bits in separately so seeds differing only there differ.
    x ^= Math.imul(Math.floor(s / 2 ** 32) | 0, 0x27d4eb2f);
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  private nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > max) {
      max = logits[i];
      best = i;
    }
  }
  // NaN never wins a comparison; a row of them (or an overflow to +Infinity) is a broken pass, not a token.
  if (!(max > -Infinity && max < Infinity)) throw nonFiniteLogits(logits);
  return best;
}

/** Every logit masked by the request's own settings (allowedTokenIds, badWords, minTokens): its fault, not the pass's. */
export class EveryTokenMaskedError extends RangeError {}

function nonFiniteLogits(logits: Float32Array): RangeError {
  let nan = 0;
  let inf = 0;
  let masked = 0;
  for (let i = 0; i < logits.length; i++) {
    if (Number.isNaN(logits[i])) nan++;
    else if (!Number.isFinite(logits[i])) inf++;
    if (logits[i] === -Infinity) masked++;
  }
  // Every logit -inf is a request's masks, not a pass: no forward pass gives that.
  if (masked === logits.length) return new EveryTokenMaskedError(
      // Named as the client wrote them too: the edge passes this on to the client, whose request said allowed_token_ids.
      "every token is masked here by the request's own settings (allowedTokenIds, badWords, minTokens holding back the end ids, a structured output; the API's allowed_token_ids, bad_words, min_tokens, structured_outputs): none is left to generate",
    );
  return new RangeError(`the model's logits are not finite (${nan} NaN, ${inf} infinite of ${logits.length}): the forward pass overflowed or the weights are broken`);
}

// Scratch for top-k/top-p ordering; grow-only, shared (single-threaded JS).
let order = new Int32Array(0);
let scaled = new Float32Array(0);

/**
 * Writes the next-token distribution after temperature, min-p, top-k and
 * top-p (vLLM's order) into `out` (length vocab) and returns it. Tokens cut
 * get 0. Temperature must be > 0 (use argmax for greedy).
 */
export function toProbabilities(logits: Float32Array, opts: SamplingOptions, out: Float32Array): Float32Array {
  const { temperature, topP, topK } = opts;
  const minP = opts.minP ?? 0;
  if (!(temperature > 0)) throw new RangeError('toProbabilities needs temperature > 0 (use argmax for greedy)');
  const n = logits.length;
  let max = -Infinity;
  let best = 0;
  for (let i = 0; i < n; i++) {
    if (logits[i] > max) {
      max = logits[i];
      best = i;
    }
  }
  if (!(max > -Infinity && max < Infinity)) throw nonFiniteLogits(logits);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i] - max) / temperature);
    // A NaN logit is a token that cannot be drawn, not a NaN in every probability.
    const w = e >= 0 ? e : 0;
    out[i] = w;
    sum += w;
  }
  for (let i = 0; i < n; i++) out[i] /= sum;
  if (minP > 0) {
    // Relative to the likeliest token (probability out[best]); the survivors renormalised before top-k / top-p.
    const floor = minP * out[best];
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (out[i] < floor) out[i] = 0;
      else kept += out[i];
    }
    for (let i = 0; i < n; i++) out[i] /= kept;
  }
  const k = topK > 0 && topK < n ? topK : n;
  if (k === n && !(topP < 1)) return out;

  // Candidates, most probable first. Top-k: a size-k min-heap (O(V log k)).
  // Top-p only: tokens under (1 - topP) / (n - 1) can never reach the nucleus
  // (all of them together hold less than 1 - topP), so only the rest is sorted.
  if (order.length < n) {
    order = new Int32Array(n);
    scaled = new Float32Array(n);
  }
  let m = 0;
  if (k < n) {
    m = keepTies(out, selectTopK(out, k, order), order);
  } else {
    const cutoff = (1 - topP) / (n - 1);
    // The most probable token always stays: under a tiny top-p and a flat distribution it alone is the nucleus.
    for (let i = 0; i < n; i++) if (out[i] >= cutoff || i === best) order[m++] = i;
  }
  const ids = order.subarray(0, m);
  ids.sort((x, y) => out[y] - out[x] || x - y);
  let keep = m;
  if (topP < 1) {
    // Top-p over what top-k left, renormalised (as vLLM, Hugging Face and llama.cpp do); without top-k
    // over the whole vocabulary (the tokens the pre-filter left out hold less than 1 - topP together).
    let total = 1;
    if (k < n) {
      total = 0;
      for (let r = 0; r < m; r++) total += out[ids[r]];
    }
    const nucleus = topP * total;
    let cum = 0;
    for (let r = 0; r < m; r++) {
      cum += out[ids[r]];
      if (cum >= nucleus) {
        keep = r + 1;
        break;
      }
    }
  }
  let kept = 0;
  for (let r = 0; r < keep; r++) kept += out[ids[r]];
  // Scale the survivors into `scaled` first: zeroing `out` must not lose them.
  for (let r = 0; r < keep; r++) scaled[r] = out[ids[r]] / kept;
  out.fill(0);
  for (let r = 0; r < keep; r++) out[ids[r]] = scaled[r];
  return out;
}

let inTop = new Uint8Array(0);

/**
 * Adds to order[0..m) every token tied with the smallest probability there:
 * top-k masks only what is below the k-th value (vLLM, Hugging Face), so a
 * tie at the boundary stays whole rather than lose its higher ids. Returns
 * the new count.
 */
function keepTies(probs: Float32Array, m: number, order: Int32Array): number {
  let kth = Infinity;
  let atKth = 0;
  for (let r = 0; r < m; r++) {
    const p = probs[order[r]];
    if (p < kth) {
      kth = p;
      atKth = 1;
    } else if (p === kth) atKth++;
  }
  // Tokens whose probability underflowed to 0 stay out: they could not be drawn anyway.
  if (!(kth > 0)) return m;
  let tied = 0;
  for (let i = 0; i < probs.length; i++) if (probs[i] === kth) tied++;
  if (tied === atKth) return m;
  if (inTop.length < probs.length) inTop = new Uint8Array(probs.length);
  for (let r = 0; r < m; r++) inTop[order[r]] = 1;
  let out = m;
  for (let i = 0; i < probs.length; i++) if (probs[i] === kth && inTop[i] === 0) order[out++] = i;
  for (let r = 0; r < m; r++) inTop[order[r]] = 0;
  return out;
}

/** Writes the indices of the k largest probs into heap[0..k) (unordered); returns k. */
function selectTopK(probs: Float32Array, k: number, heap: Int32Array): number {
  // Min-heap on probability (ties: larger id is "smaller", so lower ids win).
  const less = (a: number, b: number): boolean => probs[a] < probs[b] || (probs[a] === probs[b] && a > b);
  const siftDown = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < k && less(heap[l], heap[min])) min = l;
      if (r < k && less(heap[r], heap[min])) min = r;
      if (min === i) return;
      const t = heap[i];
      heap[i] = heap[min];
      heap[min] = t;
      i = min;
    }
  };
  for (let i = 0; i < k; i++) heap[i] = i;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let i = k; i < probs.length; i++) {
    if (less(heap[0], i)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  return k;
}

/** Draws a token id from a distribution (as toProbabilities writes it). */
export function sampleFrom(probs: Float32Array, rng: Rng): number {
  const u = rng.next();
  let cdf = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i];
    if (p <= 0) continue;
    cdf += p;
    last = i;
    if (u < cdf) return i;
  }
  return last; // rounding: u landed past the final cdf
}

/**
 * The token at sequence index `index` for a seeded request: argmax of
 * logit / T + Gumbel noise over the tokens min-p / top-k / top-p allow, an exact
 * sample of that distribution (see shared/sampling/gumbel-noise.ts). The
 * argmax token is scored first; a token whose logit term trails the best
 * score by more than its draw could make up is skipped without the draw
 * (the bound comes from its uniform, gumbelTier), so the result is the full
 * argmax's. On stories260K's logits (npm run bench:sampling): 13.0 → 5.0 µs a
 * sample at T = 1, 9.0 → 4.3 at 0.7; with top-p 0.95, where the cut itself
 * (toProbabilities) costs most, 16.4 → 15.7.
 * `scratch` (length vocab) is used only when a cut applies.
 */
export function sampleWithNoise(logits: Float32Array, opts: SamplingOptions, scratch: Float32Array, noise: GumbelNoise, index: number): number {
  const { temperature, topP, topK } = opts;
  if (!(temperature > 0)) throw new RangeError('sampleWithNoise needs temperature > 0 (use argmax for greedy)');
  const n = logits.length;
  const cut = (topK > 0 && topK < n) || topP < 1 || (opts.minP ?? 0) > 0;
  if (cut) return sampleCut(toProbabilities(logits, opts, scratch), noise, index);
  const inv = 1 / temperature;
  let best = argmax(logits);
  let bestScore = logits[best] * inv + noise.gumbel(index, best);
  for (let v = 0; v < n; v++) {
    if (v === best) continue;
    const b = logits[v] * inv;
    if (b + GUMBEL_MAX <= bestScore) continue;
    const u = noise.uniform(index, v);
    if (b + GUMBEL_TIER_BOUND[gumbelTier(u)] <= bestScore) continue;
    const s = b + gumbelOf(u);
    if (s > bestScore) {
      bestScore = s;
      best = v;
    }
  }
  return best;
}

/**
 * sampleWithNoise under a min-p / top-k / top-p cut: scores are log p of the
 * renormalised set. Tokens are compared in the probability domain (p against
 * exp(best - bound), a hair lower so rounding never skips a winner), so only
 * the tokens that could win cost a logarithm.
 */
function sampleCut(probs: Float32Array, noise: GumbelNoise, index: number): number {
  const n = probs.length;
  let best = argmax(probs);
  let bestScore = Math.log(probs[best]) + noise.gumbel(index, best);
  const thresholds = cutThresholds;
  setCutThresholds(bestScore);
  for (let v = 0; v < n; v++) {
    const p = probs[v];
    if (v === best || p <= 0 || p <= thresholds[3]) continue;
    const u = noise.uniform(index, v);
    if (p <= thresholds[gumbelTier(u)]) continue;
    const s = Math.log(p) + gumbelOf(u);
    if (s > bestScore) {
      bestScore = s;
      best = v;
      setCutThresholds(bestScore);
    }
  }
  return best;
}

/** Per tier, the probability at or below which a token cannot beat `bestScore` (a hair low, so rounding never skips a winner). */
const cutThresholds = new Float64Array(GUMBEL_TIER_BOUND.length);
function setCutThresholds(bestScore: number): void {
  for (let t = 0; t < GUMBEL_TIER_BOUND.length; t++) cutThresholds[t] = Math.exp(bestScore - GUMBEL_TIER_BOUND[t]) * (1 - 1e-6);
}
