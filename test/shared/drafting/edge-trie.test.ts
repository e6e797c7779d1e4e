import { describe, expect, it } from 'vitest';
import { createDraftTree, pathTokens } from '../../../shared/drafting/draft-tree';
import { EdgeTrieFollower, decodeEdgeTrie, draftEdgeTrie, edgeTrieDepth, edgeTrieMalformation, edgeTrieTokenOutside, encodeEdgeTrie, historyChainNodes } from '../../../shared/drafting/edge-trie';
import { MIN_CHAIN_MATCH, chainTrust } from '../../../shared/drafting/history-match';
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

  it('names the first token outside a vocabulary (what the pool refuses), in narrow and wide tries', () => {
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, 7, 511], [-1, 0, 1], [1, 0.5, 0.5]), 512)).toBeNull();
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, 7, 512, 900], [-1, 0, 1, 2], [1, 0.5, 0.5, 0.5]), 512)).toBe(512);
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, 600], [-1, 0], [1, 0.5]), 512)).toBe(600);
    const wide = encodeEdgeTrie([5, 70_000, 3], [-1, 0, 0], [1, 0.5, 0.5]);
    expect(edgeTrieTokenOutside(wide, 100_000)).toBeNull();
    expect(edgeTrieTokenOutside(wide, 32_000)).toBe(70_000);
    // Every integer of the wire form is unsigned: bytes ff ff ff ff are 4294967295, as the client wrote them, not -1.
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, 0xffff_ffff, 7], [-1, 0, 1], [1, 0.99, 0.99], 2), 512)).toBe(4_294_967_295);
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, -1, -1], [-1, 0, 1], [1, 0.99, 0.99], 2), 512)).toBe(4_294_967_295);
    // Malformed bytes are not a token error: decodeEdgeTrie ignores them.
    expect(edgeTrieTokenOutside(new Uint8Array([1, 2, 3]), 512)).toBeNull();
    expect(edgeTrieTokenOutside(encodeEdgeTrie([5, 600], [-1, 0], [1, 0.5]).subarray(0, 12), 512)).toBeNull();
  });

  it("reads no root token: a sentinel there (the root's parent is 0xffff) is no token outside the vocabulary, and is followed as any root", () => {
    for (const root of [512, 0xffff, 0xffff_ffff]) {
      const bytes = encodeEdgeTrie([root, 432, 383], [-1, 0, 1], [1, 0.9, 0.9]);
      expect(edgeTrieTokenOutside(bytes, 512), String(root)).toBeNull();
      const follower = new EdgeTrieFollower(bytes);
      expect(follower.advanceAll([432, 383])).toBe(true);
      expect(follower.position).toBe(2);
    }
    // The edge's own writer puts the context's last token there; its reader and the pool's check agree on it.
    const cache = UserCache.decode(null);
    const drafted = draftEdgeTrie(cache, [1, 400, 511]);
    expect(decodeEdgeTrie(drafted)!.tokens[0]).toBe(511);
    expect(edgeTrieTokenOutside(drafted, 512)).toBeNull();
  });

  it('says what makes bytes no trie (what the pool refuses a push for), exactly where decodeEdgeTrie gives up', () => {
    const good = encodeEdgeTrie([5, 7, 9, 11], [-1, 0, 1, 0], [1, 0.5, 0.5, 0.25]);
    expect(edgeTrieMalformation(good)).toBeNull();
    expect(edgeTrieMalformation(encodeEdgeTrie([5, 70_000, 3], [-1, 0, 0], [1, 0.5, 0.5]))).toBeNull();
    const cases: Array<[Uint8Array, RegExp]> = [
      [new Uint8Array([1, 2, 3]), /3 bytes are shorter than a trie's header/],
      [new Uint8Array(good.length), /wrong magic number/],
      [good.subarray(0, good.length - 1), /do not hold the 4 nodes/],
    ];
    // Node 2's parent pointing at itself: written over the encoded parents.
    const loop = good.slice();
    new DataView(loop.buffer).setUint16(16 + 4 * 2 + 2 * 2, 2, true);
    cases.push([loop, /node 2's parent 2 does not come before it/]);
    for (const [bytes, message] of cases) {
      expect(edgeTrieMalformation(bytes)).toMatch(message);
      expect(decodeEdgeTrie(bytes)).toBeNull();
    }
    expect(decodeEdgeTrie(good)).not.toBeNull();
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
  it('sizes the depth of a trie to the tokens a generation has left, less the bonus token the pool adds', () => {
    expect(edgeTrieDepth(1, 0)).toBe(0);
    expect(edgeTrieDepth(4, 0)).toBe(3);
    expect(edgeTrieDepth(4, 2)).toBe(1);
    expect(edgeTrieDepth(4, 3)).toBe(0);
    expect(edgeTrieDepth(4, 9)).toBe(0);
  });

  describe('history chains', () => {
    /** A user whose stories share most of their 4-grams (a 6-token alphabet), the last of them told again. */
    function repeatingUser(): { cache: UserCache; story: number[] } {
      const rand = seededRandom(31);
      let bytes: Uint8Array | null = null;
      const stories = Array.from({ length: 8 }, () => [1, ...tokenStream(rand, 150, 6)]);
      for (const st of stories) bytes = mergeIntoUserCache(bytes, st);
      return { cache: UserCache.decode(bytes), story: stories[3] };
    }

    /** How many tokens of `want` the trie's paths follow from the root. */
    function follows(bytes: Uint8Array, want: number[]): number {
      const f = new EdgeTrieFollower(bytes);
      let d = 0;
      while (d < want.length && f.advance(want[d])) d++;
      return d;
    }

    it('drafts what followed a long verbatim match first, far deeper than the n-gram table', () => {
      const { cache, story } = repeatingUser();
      const prompt = story.slice(0, 20);
      const rest = story.slice(20);
      const chained = draftEdgeTrie(cache, prompt, { maxNodes: 256 });
      const plain = draftEdgeTrie(cache, prompt, { maxNodes: 256, historyChain: false });
      expect(follows(chained, rest)).toBe(rest.length);
      expect(follows(plain, rest)).toBeLessThan(40);
      // The chain is node 1 and first children from there, marked for the pool.
      const t = decodeEdgeTrie(chained)!;
      let chain = 0;
      for (let i = 1; i > 0 && chain < rest.length; i = t.firstChild[i]) {
        expect(t.onChain[i]).toBe(1);
        expect(t.tokens[i]).toBe(rest[chain++]);
      }
      let marked = 0;
      for (let i = 0; i < t.size; i++) marked += t.onChain[i];
      expect(marked).toBe(rest.length);
      expect(decodeEdgeTrie(plain)!.onChain.every((x) => x === 0)).toBe(true);
    });

    it('a follower reads the chain ahead of its position as a draft, and knows when the chain has run out', () => {
      // Root 9, chain 1 -> 2 -> 3 (first children), a table guess 7 under node 1.
      const bytes = encodeEdgeTrie([9, 1, 2, 7, 3], [-1, 0, 1, 1, 2], [1, 0.9, 0.8, 0.1, 0.5], 3);
      expect(historyChainNodes(bytes)).toBe(3);
      expect(historyChainNodes(encodeEdgeTrie([9, 1], [-1, 0], [1, 1]))).toBe(0);
      const f = new EdgeTrieFollower(bytes);
      const tree = createDraftTree(9);
      expect(f.onChainAhead).toBe(true);
      expect(f.chainAhead(tree, 8)).toBe(3);
      expect(pathTokens(tree, 3)).toEqual([1, 2, 3]);
      expect(tree.probs[3]).toBeCloseTo(0.9 * 0.8 * 0.5, 2);
      expect(f.chainAhead(tree, 2)).toBe(2);
      f.advance(1);
      expect(f.chainAhead(tree, 8)).toBe(2);
      expect(tree.tokens[0]).toBe(1);
      f.advanceAll([2, 3]);
      expect(f.onChainAhead).toBe(false);
      expect(f.chainAhead(tree, 8)).toBe(0);
      // Off the chain (the table's guess): nothing ahead.
      const g = new EdgeTrieFollower(bytes);
      g.advanceAll([1, 7]);
      expect(g.onChainAhead).toBe(false);
    });

    it('drafts no node deeper than maxDepth (the chain cut there too), a root alone at 0, and far fewer nodes for a short reply', () => {
      const { cache, story } = repeatingUser();
      const prompt = story.slice(0, 20);
      const rest = story.slice(20);
      const full = decodeEdgeTrie(draftEdgeTrie(cache, prompt, { maxNodes: 128 }))!;
      const depthOf = (t: NonNullable<ReturnType<typeof decodeEdgeTrie>>, i: number): number => pathOf(t, i).length;
      for (const maxDepth of [1, 2, 3, 8]) {
        const bytes = draftEdgeTrie(cache, prompt, { maxNodes: 128, maxDepth });
        const t = decodeEdgeTrie(bytes)!;
        const depths = Array.from({ length: t.size }, (_, i) => depthOf(t, i));
        expect(Math.max(...depths), `maxDepth ${maxDepth}`).toBe(maxDepth);
        // The chain goes as deep as allowed, and no further.
        expect(historyChainNodes(bytes)).toBe(maxDepth);
        expect(follows(bytes, rest)).toBe(maxDepth);
        // Best-first as before: the full trie's first level is all there (the nodes not spent deeper may add guesses).
        const firstLevel = (u: typeof t): number[] => Array.from({ length: u.size }, (_, i) => i).filter((i) => u.parents[i] === 0).map((i) => u.tokens[i]);
        expect(firstLevel(t)).toEqual(expect.arrayContaining(firstLevel(full)));
      }
      expect(decodeEdgeTrie(draftEdgeTrie(cache, prompt, { maxNodes: 128, maxDepth: 2 }))!.size).toBeLessThan(full.size / 4);
      expect(decodeEdgeTrie(draftEdgeTrie(cache, prompt, { maxNodes: 128, maxDepth: 0 }))!.size).toBe(1);
    });

    it('trusts the chain by its match, more the longer it runs, and fills the rest with the table\'s other guesses', () => {
      const { cache, story } = repeatingUser();
      const t = decodeEdgeTrie(draftEdgeTrie(cache, story.slice(0, 20), { maxNodes: 128 }))!;
      // 20 tokens matched at the root (the history knows the whole prompt).
      expect(t.condProbs[1]).toBeCloseTo(chainTrust(20), 2);
      let last = 0;
      for (let i = 1; i > 0 && t.onChain[i]; i = t.firstChild[i]) {
        expect(t.condProbs[i]).toBeGreaterThanOrEqual(last - 1 / 255);
        last = t.condProbs[i];
        // No other child repeats the chain's token.
        const next = t.firstChild[i];
        if (next > 0) for (let c = t.nextSibling[next]; c >= 0; c = t.nextSibling[c]) expect(t.tokens[c]).not.toBe(t.tokens[next]);
      }
      expect(t.size).toBe(128);
      // Too short a match drafts no chain.
      const short = decodeEdgeTrie(draftEdgeTrie(cache, [2, ...story.slice(13, 13 + MIN_CHAIN_MATCH - 2)], { maxNodes: 64 }))!;
      expect(short.onChain.every((x) => x === 0)).toBe(true);
    });
  });
});
