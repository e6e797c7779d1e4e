/**
 * The order in which the methods replay a round of a level. Plain rotation
 * (round t starts at method t mod m) only balances the methods' places over
 * a multiple of m rounds: a level of two rounds and three methods (32 and 128
 * with `--repeat 1`) never put the third method first. Here each pair of
 * turns (2k, 2k + 1) is a rotation followed by its reverse, so the two rounds
 * of a pair give every method the same mean place (bench-serve starts each
 * replay at an even turn), and 2m turns put each method in each place twice.
 */
export function methodOrder<M>(methods: readonly M[], turn: number): M[] {
  const m = methods.length;
  const shift = Math.floor(turn / 2) % m;
  const order = methods.map((_, i) => methods[(i + shift) % m]);
  return turn % 2 === 0 ? order : order.reverse();
}
