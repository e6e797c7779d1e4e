/**
 * A request's seed as the pool takes it (0 to 2^53 - 1). Requests may send
 * any integer, as OpenAI takes an int64; the edge's choices and `sssd
 * generate` map it the same way, so one seed gives one text through either
 * (`generate` takes seeds within ±(2^53 - 1) alone: those held exactly).
 */
const SEED_SPACE = 2n ** 53n;

/**
 * The pool's seed for choice `i` of a request's seed: in integers, not
 * floats, where seed + i would round back to seed past 2^53 and every choice
 * would be the same text; negative seeds as int64 bits (-s is not s).
 */
export function choiceSeed(seed: number, i: number): number {
  return Number((BigInt.asUintN(64, BigInt(seed)) + BigInt(i)) % SEED_SPACE);
}
