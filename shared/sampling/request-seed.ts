/**
 * A request's seed as the pool takes it (0 to 2^53 - 1). Requests may send
 * any integer, as OpenAI takes an int64; the edge's choices and `sssd
 * generate` map it the same way, so one seed gives one text through either
 * (`generate` takes seeds within ±(2^53 - 1) alone: those held exactly).
 */
const SEED_SPACE = 2n ** 53n;
const MASK_64 = 2n ** 64n - 1n;

/** SplitMix64's finalizer: a bijection of 64-bit words that spreads every input bit over the output. */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  return z ^ (z >> 31n);
}

/**
 * The pool's seed for choice `i` of a request's seed. Choice 0 runs with the
 * seed itself (its 64 bits, negative seeds as int64 bits, modulo 2^53: -s is
 * not s), so an n = 1 request and choice 0 of any n write the same text.
 * Choice i > 0 runs with a hash of (that seed, i) in the same range: with
 * seed + i, seed k and seed k + 1 shared n - 1 of their choices (review
 * h190: an evaluation's `seed = run, n = 4` was mostly the same samples).
 * Hashed from choice 0's seed, so that seed sent back gives every choice again.
 */
export function choiceSeed(seed: number, i: number): number {
  const base = BigInt.asUintN(64, BigInt(seed)) % SEED_SPACE;
  if (i === 0) return Number(base);
  // The top 53 bits of a mix of (mixed seed + i): no two (seed, i) pairs are near each other in the input.
  return Number(mix64((mix64(base) + BigInt(i)) & MASK_64) >> 11n);
}

/**
 * A seed for a sampled request that sent none: any of the 2^53 (a 32-bit draw
 * gave two unseeded requests of one prompt the same text once in 2^32 pairs).
 */
export function drawnSeed(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return (high >>> 11) * 2 ** 32 + low;
}
