/**
 * Log-probabilities of a position's next token under the model's own
 * distribution (a log-softmax of the logits: temperature 1, no cut), for
 * generations that ask for them. Only such generations pay for it: one pass
 * over the vocabulary per emitted token, plus a small selection for the
 * alternatives.
 */

/** log Σ exp(logits), computed stably. */
export function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * The `n` most likely tokens as [id, log-probability], most likely first
 * (ties: the lower id first), given the logits and their logSumExp.
 */
export function topLogprobs(logits: Float32Array, lse: number, n: number): Array<[number, number]> {
  const k = Math.min(n, logits.length);
  const ids: number[] = [];
  // Insertion into a short sorted list: n is at most 20.
  for (let v = 0; v < logits.length; v++) {
    const x = logits[v];
    if (ids.length === k && x <= logits[ids[k - 1]]) continue;
    let i = ids.length < k ? ids.length : k - 1;
    if (ids.length < k) ids.push(v);
    while (i > 0 && logits[ids[i - 1]] < x) {
      ids[i] = ids[i - 1];
      i--;
    }
    ids[i] = v;
  }
  return ids.map((id) => [id, logits[id] - lse]);
}

/** How many tokens are at least as likely as `token` under `logits`, itself included: 1 = the most likely (vLLM's rank, ties counted in). */
export function rankOf(logits: Float32Array, token: number): number {
  const x = logits[token];
  let rank = 0;
  for (let v = 0; v < logits.length; v++) if (logits[v] >= x) rank++;
  return rank;
}

/** The log-probabilities of `ids` (vLLM's logprob_token_ids) as [id, log-probability], in their order, given the logits and their logSumExp. */
export function idLogprobs(logits: Float32Array, lse: number, ids: readonly number[]): Array<[number, number]> {
  return ids.map((id) => [id, logits[id] - lse]);
}

/**
 * Appends `token`'s log-probability under `logits` to `logprobs` and, when
 * `top` is given, to `top` the listed `ids`' where given, else the `n` most
 * likely tokens' (one log-sum-exp for all).
 */
export function pushLogprobs(
  logits: Float32Array,
  token: number,
  n: number,
  logprobs: number[],
  top: Array<Array<[number, number]>> | null,
  ids?: readonly number[],
): void {
  const lse = logSumExp(logits);
  logprobs.push(logits[token] - lse);
  if (top) top.push(ids ? idLogprobs(logits, lse, ids) : topLogprobs(logits, lse, n));
}
