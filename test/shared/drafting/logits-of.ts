/** Logits over a `vocab`-token vocabulary whose softmax is `probs` (by token; every other token gets a tiny share). */
export function logitsOf(probs: Record<number, number>, vocab: number): Float32Array {
  const l = new Float32Array(vocab).fill(-30);
  for (const [t, p] of Object.entries(probs)) l[Number(t)] = Math.log(p);
  return l;
}
