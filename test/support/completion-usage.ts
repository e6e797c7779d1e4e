/** A finished completion's usage as the edge reports it, with speculation off: for tests of the reply formats. */
export function offUsage(promptTokens: number, completionTokens: number, steps = completionTokens) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0 },
    speculation: { method: 'off' as const, drafts: 0, draft_tokens: 0, accepted_tokens: 0, steps, mean_acceptance_length: 1, edge_accepted_tokens: 0, edge_trie_bytes: 0 },
  };
}
