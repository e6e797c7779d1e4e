import { describe, expect, it } from 'vitest';
import { draftUserTrie } from '../../edge/completion-run';
import { decodeEdgeTrie, edgeTrieDepth, historyChainNodes } from '../../shared/drafting/edge-trie';
import { UserCache, mergeIntoUserCache } from '../../shared/drafting/user-cache';

// A user who wrote this story before: a prompt of its start matches their history verbatim (a chain to its end).
const STORY = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58];
const PROMPT = STORY.slice(0, 10);
const cache = (): UserCache => UserCache.decode(mergeIntoUserCache(null, STORY));

/** The deepest node of a trie, in tokens below its root. */
function depthOf(bytes: Uint8Array): number {
  const t = decodeEdgeTrie(bytes)!;
  let deepest = 0;
  for (let i = 1; i < t.size; i++) {
    let d = 0;
    for (let j = i; j > 0; j = t.parents[j]) d++;
    deepest = Math.max(deepest, d);
  }
  return deepest;
}

describe('draftUserTrie', () => {
  it('drafts no trie for a reply of one token (max_tokens 1), where the pool verifies no draft', () => {
    expect(draftUserTrie(cache(), PROMPT, 128, 0, edgeTrieDepth(1, 0))).toBeNull();
    // Nor for a generation whose last token is next (a push after max_tokens - 1 of them).
    expect(draftUserTrie(cache(), [...PROMPT, 48, 49, 50], 128, 0, edgeTrieDepth(4, 3))).toBeNull();
  });

  it('drafts no deeper than the tokens left less the bonus, where the history would go on', () => {
    const whole = draftUserTrie(cache(), PROMPT, 128, 0, edgeTrieDepth(256, 0))!;
    expect(depthOf(whole)).toBe(STORY.length - PROMPT.length);
    for (const maxTokens of [2, 3, 5]) {
      const trie = draftUserTrie(cache(), PROMPT, 128, 0, edgeTrieDepth(maxTokens, 0))!;
      expect(depthOf(trie), `max_tokens ${maxTokens}`).toBe(maxTokens - 1);
      expect(historyChainNodes(trie)).toBe(maxTokens - 1);
      expect(trie.length).toBeLessThan(whole.length);
    }
    // Pushed for prompt + output so far: as deep as the tokens left then.
    const later = draftUserTrie(cache(), STORY.slice(0, 13), 128, 0, edgeTrieDepth(6, 3))!;
    expect(depthOf(later)).toBe(2);
    expect(Array.from(decodeEdgeTrie(later)!.tokens.subarray(1, 3))).toEqual(STORY.slice(13, 15));
  });

  it('drafts none from an empty cache or with no nodes allowed, whatever the depth', () => {
    expect(draftUserTrie(UserCache.decode(null), PROMPT, 128, 0, 8)).toBeNull();
    expect(draftUserTrie(cache(), PROMPT, 0, 0, 8)).toBeNull();
  });
});
