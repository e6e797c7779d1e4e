/**
 * Which ids end a generation: the model's end tokens, unless the request
 * ignores them (vLLM's ignore_eos), and the request's stop token ids. The
 * pool stops at them; the edge reads them to tell a whole generation from a
 * cut one, and to name a stop id in `stop_reason`. Isomorphic.
 */
export function generationEndIds(eosIds: ReadonlySet<number>, ignoreEos: boolean, stopTokenIds: readonly number[]): ReadonlySet<number> {
  // Most requests end at the model's end tokens alone: they share its set.
  if (!ignoreEos && stopTokenIds.length === 0) return eosIds;
  return new Set([...(ignoreEos ? [] : eosIds), ...stopTokenIds]);
}
