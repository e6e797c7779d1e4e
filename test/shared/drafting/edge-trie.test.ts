import { describe, expect, it } from 'vitest';
import { EdgeTrieFollower, decodeEdgeTrie, draftEdgeTrie, encodeEdgeTrie } from '../../../shared/drafting/edge-trie';
import { UserCache, mergeIntoUserCache } from '../../../shared/drafting/user-cache';
import { seededRandom, tokenStream } from './random-tokens';

function pathOf(t: NonNullable<ReturnType<typeof decodeEdgeTrie>>, node: number): number[] {
  const out: number[] = [];
  for (let i = node; i > 0; i = t.parents[i]) out.push(t.tokens[i]);
  return out.reverse();
}

describe('edge trie', () => {
  it('drafts a deep trie of the continuation a user has written before, within maxNodes', () => {
    const story = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52];
    const cache = UserCache.decode(mergeIntoUserCache(null, story));
    const bytes = draftEdgeTrie(cache, [1, 7, 40, 41], { maxNodes: 64 });
    const t = decodeEdgeTrie(bytes)!;
    expect(t).not.toBeNull();
    expect(t.tokens[0]).toBe(41);
    // The deepest path is the rest of the story.
    let deepest = 0;
    for (let i = 0; i < t.size; i++) if (pathOf(t, i).length > pathOf(t, deepest).length) deepest = i;
    expect(pathOf(t, deepest)).toEqual(story.slice(3));
    for (let n of [1, 4, 16]) expect(decodeEdgeTrie(draftEdgeTrie(cache, [40, 41], { maxNodes: n }))!.size).toBeLessThanOrEqual(n);
  });

  it('only proposes children the cache saw after the path context, most probable first', () => {
    const rand = seededRandom(12);
    let bytes: Uint8Array | null = null;
    const history: number[][] = [];
    for (let i = 0; i < 5; i++) {
      const s = tokenStream(rand, 200, 20);
      history.push(s);
      bytes = mergeIntoUserCache(bytes, s);
    }
    const cache = UserCache.decode(bytes);
    const t = decodeEdgeTrie(draftEdgeTrie(cache, history[4].slice(0, 50), { maxNodes: 200 }))!;
    expect(t.size).toBeGreaterThan(20);
    const seen = new Set<string>();
    for (const s of history) for (let i = 1; i < s.length; i++) seen.add(`${s[i - 1]}>${s[i]}`);
    for (let i = 1; i < t.size; i++) {
      const parentToken = t.tokens[t.parents[i]];
      expect(seen.has(`${parentToken}>${t.tokens[i]}`)).toBe(true);
    }
  });

  it('is empty (root only) for an empty cache, and round-trips 32-bit tokens', () => {
    const t = decodeEdgeTrie(draftEdgeTrie(UserCache.decode(null), [1, 2, 3]))!;
    expect(t.size).toBe(1);
    const wide = decodeEdgeTrie(encodeEdgeTrie([5, 100_000, 7], [-1, 0, 1], [1, 0.5, 1]))!;
    expect(Array.from(wide.tokens)).toEqual([5, 100_000, 7]);
    expect(wide.condProbs[1]).toBeCloseTo(0.5, 2);
  });

  it('follower advances along accepted tokens and knows when the path has left the trie', () => {
    const bytes = encodeEdgeTrie([9, 1, 2, 3, 4], [-1, 0, 1, 0, 3], [1, 0.6, 1, 0.4, 1]);
    const f = new EdgeTrieFollower(bytes);
    expect(f.exhausted).toBe(false);
    expect(f.advance(3)).toBe(true);
    expect(f.exhausted).toBe(false);
    expect(f.advance(4)).toBe(true);
    expect(f.exhausted).toBe(true); // a leaf: nothing more to propose
    const g = new EdgeTrieFollower(bytes);
    expect(g.advanceAll([1, 7])).toBe(false);
    expect(g.position).toBe(-1);
    expect(g.exhausted).toBe(true);
    for (const junk of [null, new Uint8Array(3), bytes.subarray(0, bytes.length - 2), new Uint8Array(64).fill(255)]) {
      expect(new EdgeTrieFollower(junk).exhausted).toBe(true);
    }
  });
});
