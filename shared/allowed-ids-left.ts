/**
 * Whether an allowed list (vLLM's allowed_token_ids) leaves the first token
 * something to be once the request's other masks apply: a one-token bad word
 * is never allowed, and while min_tokens holds them back neither are the ids
 * that end the generation (shared/end-ids.ts). Where it leaves nothing, the
 * request can only fail: the edge refuses it naming its fields, the pool
 * naming the protocol's. Isomorphic.
 */
export function allowedIdsLeft(allowed: readonly number[], badWords: readonly (readonly number[])[], endIdsHeldBack: ReadonlySet<number> | null): boolean {
  const banned = new Set<number>();
  for (const word of badWords) if (word.length === 1) banned.add(word[0]);
  return allowed.some((id) => !banned.has(id) && !endIdsHeldBack?.has(id));
}
