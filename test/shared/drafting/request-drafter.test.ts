import { describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { pathTokens, validateDraftTree } from '../../../shared/drafting/draft-tree';
import { encodeEdgeTrie } from '../../../shared/drafting/edge-trie';
import { type DatastoreLike, type DatastoreMatchesLike, resetDraftCache } from '../../../shared/drafting/datastore-source';
import { defaultFusionWeights, sourceLimit } from '../../../shared/drafting/fusion';
import { INDEX_SLICE, RequestDrafter } from '../../../shared/drafting/request-drafter';
import { DATASTORE_MATCH_TIERS, datastoreMatchTier } from '../../../shared/drafting/sssd-proposer';
import { trieCapacityClass } from '../../../shared/drafting/trie-storage-pool';
import { seededRandom, tokenStream } from './random-tokens';

function paths(tree: ReturnType<RequestDrafter['draft']>): string[] {
  const out: string[] = [];
  for (let i = 1; i < tree.size; i++) out.push(pathTokens(tree, i).join(','));
  return out;
}

describe('RequestDrafter', () => {
  it('drafts valid trees within the budget for every method as the request grows', () => {
    const rand = seededRandom(41);
    const docs = Array.from({ length: 40 }, () => [1, ...tokenStream(rand, 200, 30)]);
    const datastore = Datastore.fromDocuments(docs, { indexer: 'inline' });
    const prompt = [1, ...tokenStream(rand, 60, 30)];
    for (const method of ['off', 'pld', 'context', 'sssd'] as const) {
      const d = new RequestDrafter({ method, promptIds: prompt, datastore });
      for (let step = 0; step < 30; step++) {
        const budget = step % 9 === 0 ? 0 : 1 + (step % 32);
        const tree = d.draft(budget);
        expect(validateDraftTree(tree)).toBeNull();
        expect(tree.size - 1).toBeLessThanOrEqual(method === 'off' ? 0 : budget);
        expect(tree.tokens[0]).toBe(d.context.data[d.context.length - 1]);
        d.accept([Math.floor(rand() * 30), Math.floor(rand() * 30)]);
      }
      expect(d.outputLength).toBe(60);
    }
  });

  it('learns from its own accepted output (context source)', () => {
    const d = new RequestDrafter({ method: 'context', promptIds: [1, 50, 51] });
    expect(d.draft(4).size).toBe(1);
    d.accept([52, 53, 54, 50, 51]);
    expect(paths(d.draft(4))).toContain('52,53,54');
  });

  it('drafts from a predicted output where the output meets it, for context, sssd and pld, and not across its end into the prompt', () => {
    // The prediction: 60 61 62 63 64 65; the output so far has reached 61 (after an edit: 70 instead of 60).
    const prediction = [60, 61, 62, 63, 64, 65];
    for (const method of ['context', 'sssd', 'pld'] as const) {
      const d = new RequestDrafter({ method, promptIds: [1, 40, 41], predictionIds: prediction });
      d.accept([70, 61]);
      expect(paths(d.draft(4)), method).toContain('62,63,64,65');
      const without = new RequestDrafter({ method, promptIds: [1, 40, 41] });
      without.accept([70, 61]);
      expect(paths(without.draft(4)), method).not.toContain('62');
    }
    // No n-gram spans the prediction's end and the prompt's start: 65 is not followed by 1.
    const d = new RequestDrafter({ method: 'context', promptIds: [1, 40, 41], predictionIds: prediction });
    d.accept([65]);
    expect(paths(d.draft(4))).not.toContain('1');
    // Speculation off drafts nothing whatever it is given.
    expect(new RequestDrafter({ method: 'off', promptIds: [1, 60], predictionIds: prediction }).draft(4).size).toBe(1);
  });

  it('uses the datastore in sssd mode', () => {
    const datastore = Datastore.fromDocuments([[1, 7, 8, 9, 10, 11, 12]], { indexer: 'inline' });
    const d = new RequestDrafter({ method: 'sssd', promptIds: [1, 3, 8, 9], datastore });
    const tree = d.draft(3);
    expect(paths(tree)).toEqual(['10', '10,11', '10,11,12']);
    expect(tree.sources[1]).toBe(3); // 'datastore' in protocol tokenSources
  });

  it('follows the edge trie, reports when the path leaves it, and takes a fresh one that catches up', () => {
    // Edge trie for prompt [1, 5]: 5 -> 6 -> 7 -> 8
    const trie = encodeEdgeTrie([5, 6, 7, 8], [-1, 0, 1, 2], [1, 1, 1, 1]);
    const d = new RequestDrafter({ method: 'sssd', promptIds: [1, 5], edgeTrie: trie });
    expect(d.edgeTrieExhausted).toBe(false);
    const tree = d.draft(8);
    expect(paths(tree)).toEqual(['6', '6,7', '6,7,8']);
    expect(tree.sources[1]).toBe(1); // 'edge'
    d.accept([6, 9]);
    expect(d.edgeTrieExhausted).toBe(true);
    // The edge drafted a fresh trie after output [6] (it had not seen 9 yet): root 6 -> 9 -> 4.
    d.pushEdgeTrie(encodeEdgeTrie([6, 9, 4], [-1, 0, 1], [1, 1, 1]), 1);
    expect(d.edgeTrieExhausted).toBe(false);
    expect(paths(d.draft(8))).toContain('4');
    // A trie for a context the request has not reached counts as exhausted.
    d.pushEdgeTrie(trie, 10);
    expect(d.edgeTrieExhausted).toBe(true);
  });

  it('takes a history chain\'s probabilities as the edge measured them, and discounts the table\'s guesses', () => {
    const probs = [1, 0.9, 0.9, 0.9];
    const chained = new RequestDrafter({ method: 'sssd', promptIds: [1, 5], edgeTrie: encodeEdgeTrie([5, 6, 7, 8], [-1, 0, 1, 2], probs, 3) });
    const plain = new RequestDrafter({ method: 'sssd', promptIds: [1, 5], edgeTrie: encodeEdgeTrie([5, 6, 7, 8], [-1, 0, 1, 2], probs) });
    const a = chained.draft(8);
    const b = plain.draft(8);
    expect(paths(a)).toEqual(['6', '6,7', '6,7,8']);
    expect(a.probs[1]).toBeCloseTo(0.9, 2);
    expect(a.probs[3]).toBeCloseTo(0.9 ** 3, 2);
    expect(b.probs[1]).toBeCloseTo(0.9 * defaultFusionWeights.edge, 2);
    // Followed into the chain, its next nodes are still taken as they are.
    chained.accept([6]);
    expect(chained.draft(8).probs[1]).toBeCloseTo(0.9, 2);
  });

  it('fuses context, edge trie and datastore so that every path is a candidate path of some source', () => {
    const rand = seededRandom(77);
    const occurs = (hay: number[], needle: number[]): boolean => {
      outer: for (let i = 0; i + needle.length <= hay.length; i++) {
        for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
        return true;
      }
      return false;
    };
    for (let trial = 0; trial < 15; trial++) {
      const docs = Array.from({ length: 20 }, () => [1, ...tokenStream(rand, 100, 12)]);
      const datastore = Datastore.fromDocuments(docs, { indexer: 'inline' });
      const prompt = [1, ...tokenStream(rand, 80, 12)];
      const last = prompt[prompt.length - 1];
      // An edge trie of random paths under the prompt's last token.
      const eTokens = [last];
      const eParents = [-1];
      for (let i = 1; i < 30; i++) {
        eTokens.push(Math.floor(rand() * 12));
        eParents.push(Math.floor(rand() * i));
      }
      const edgePaths = new Set<string>();
      for (let i = 1; i < eTokens.length; i++) {
        const p: number[] = [];
        for (let n = i; n > 0; n = eParents[n]) p.push(eTokens[n]);
        edgePaths.add(p.reverse().join(','));
      }
      const d = new RequestDrafter({
        method: 'sssd',
        promptIds: prompt,
        datastore,
        edgeTrie: encodeEdgeTrie(eTokens, eParents, eTokens.map(() => rand())),
      });
      const tree = d.draft(1 + Math.floor(rand() * 40));
      const sourcesSeen = new Set<number>();
      for (let i = 1; i < tree.size; i++) {
        const path = pathTokens(tree, i);
        sourcesSeen.add(tree.sources[i]);
        const fromEdge = edgePaths.has(path.join(','));
        let fromContext = false;
        let fromDatastore = false;
        for (let k = 1; k <= 8 && !(fromContext && fromDatastore); k++) {
          const probe = [...prompt.slice(prompt.length - k), ...path];
          if (k <= 4 && occurs(prompt, probe)) fromContext = true;
          if (docs.some((doc) => occurs(doc, probe))) fromDatastore = true;
        }
        expect(fromEdge || fromContext || fromDatastore).toBe(true);
      }
      expect(tree.size).toBeGreaterThan(1);
    }
  });

  it('drafts a 32-node tree fast enough for the per-step path', () => {
    const rand = seededRandom(8);
    const docs = Array.from({ length: 200 }, () => [1, ...tokenStream(rand, 300, 300)]);
    const datastore = Datastore.fromDocuments(docs, { indexer: 'inline' });
    const d = new RequestDrafter({ method: 'sssd', promptIds: [1, ...tokenStream(rand, 2000, 300)], datastore });
    const times: number[] = [];
    for (let i = 0; i < 400; i++) {
      const t0 = performance.now();
      d.draft(32);
      times.push(performance.now() - t0);
      d.accept([Math.floor(rand() * 300)]);
    }
    times.sort((a, b) => a - b);
    // Generous bounds (2 shared cores); the evaluator reports the real figures.
    expect(times[200]).toBeLessThan(1);
  });
  it("keeps each drafter's tree its own although the fusion scratch is shared", () => {
    const a = new RequestDrafter({ method: 'sssd', promptIds: [1, 5, 6, 7, 5, 6, 8, 5, 6] });
    const b = new RequestDrafter({ method: 'context', promptIds: [1, 9, 10, 11, 9, 10, 12, 9, 10] });
    const ta = a.draft(8);
    const before = paths(ta);
    expect(before.length).toBeGreaterThan(0);
    const tb = b.draft(8);
    expect(tb).not.toBe(ta);
    expect(paths(ta)).toEqual(before);
    expect(paths(tb).every((p) => !before.includes(p))).toBe(true);
  });

  it('replays cached datastore candidates only while the query and the datastore generation are unchanged', () => {
    const rand = seededRandom(17);
    const docs = Array.from({ length: 20 }, () => [1, ...tokenStream(rand, 200, 20)]);
    const real = Datastore.fromDocuments(docs, { indexer: 'inline' });
    let calls = 0;
    let generation: number | undefined = 0;
    const counting: DatastoreLike = {
      get tokenCount() {
        return real.tokenCount;
      },
      get generation() {
        return generation;
      },
      lookup(context: ArrayLike<number>, out?: DatastoreMatchesLike, opts?: Parameters<DatastoreLike['lookup']>[2]): DatastoreMatchesLike {
        calls++;
        return real.lookup(context, out, opts);
      },
    };
    const d = new RequestDrafter({ method: 'sssd', promptIds: docs[0].slice(0, 30), datastore: counting });
    const first = paths(d.draft(16));
    expect(paths(d.draft(16))).toEqual(first);
    expect(calls).toBe(1);
    d.accept([docs[0][30]]);
    d.draft(16);
    expect(calls).toBe(2);
    generation = 1; // a live append swapped chunks in
    d.draft(16);
    expect(calls).toBe(3);
    generation = undefined; // a datastore that cannot tell: never reuse
    d.draft(16);
    d.draft(16);
    expect(calls).toBe(5);
  });

  it('looks up fewer datastore matches for a small tree, and keeps one cached recording per lookup size', () => {
    const rand = seededRandom(23);
    const docs = Array.from({ length: 30 }, () => [1, ...tokenStream(rand, 200, 12)]);
    const real = Datastore.fromDocuments(docs, { indexer: 'inline' });
    const asked: number[] = [];
    const counting: DatastoreLike = {
      get tokenCount() {
        return real.tokenCount;
      },
      generation: 0,
      lookup(context: ArrayLike<number>, out?: DatastoreMatchesLike, opts?: Parameters<DatastoreLike['lookup']>[2]): DatastoreMatchesLike {
        asked.push(opts?.maxMatches ?? -1);
        const found = real.lookup(context, out, opts);
        expect(found.count).toBeLessThanOrEqual(opts?.maxMatches ?? Infinity);
        return found;
      },
    };
    // A small vocabulary: short suffixes occur hundreds of times, plenty of matches to cut.
    const d = new RequestDrafter({ method: 'sssd', promptIds: docs[0].slice(0, 30), datastore: counting });
    d.draft(32);
    d.draft(4);
    d.draft(8);
    expect(asked).toEqual([DATASTORE_MATCH_TIERS[3], DATASTORE_MATCH_TIERS[0], DATASTORE_MATCH_TIERS[1]]);
    // Each size's recording replays (no lookup), and a small lookup never stands in for a big one.
    d.draft(4);
    d.draft(32);
    d.draft(8);
    expect(asked.length).toBe(3);
    expect(datastoreMatchTier(sourceLimit(32, defaultFusionWeights))).toBe(DATASTORE_MATCH_TIERS.length - 1);
  });

  it('drafts the same trees from the datastore draft cache as without it', () => {
    const rand = seededRandom(29);
    const docs = Array.from({ length: 60 }, () => [1, ...tokenStream(rand, 300, 40)]);
    const store = Datastore.fromDocuments(docs, { indexer: 'inline' });
    // No generation: never cached, the reference.
    const uncached: DatastoreLike = { tokenCount: store.tokenCount, lookup: (c, o, p) => store.lookup(c, o, p) };
    for (let r = 0; r < 30; r++) {
      const prompt = docs[r % docs.length].slice(0, 20 + (r % 7));
      const truth = docs[r % docs.length].slice(prompt.length, prompt.length + 40);
      const a = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore: store });
      const b = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore: uncached });
      for (let i = 0; i < truth.length; i += 3) {
        const budget = [4, 8, 16, 32][i % 4];
        expect(paths(a.draft(budget))).toEqual(paths(b.draft(budget)));
        a.accept(truth.slice(i, i + 3));
        b.accept(truth.slice(i, i + 3));
      }
    }
  });

  it('answers a repeated query from the draft cache, and asks the datastore again once the cache is reset', () => {
    const rand = seededRandom(37);
    const docs = Array.from({ length: 20 }, () => [1, ...tokenStream(rand, 200, 40)]);
    const store = Datastore.fromDocuments(docs, { indexer: 'inline' });
    let lookups = 0;
    const counted: DatastoreLike = {
      tokenCount: store.tokenCount,
      generation: 0,
      lookup(c, o, p) {
        lookups++;
        return store.lookup(c, o, p);
      },
    };
    const prompt = docs[3].slice(0, 30);
    const draft = () => paths(new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore: counted }).draft(8));
    const first = draft();
    expect(lookups).toBe(1);
    expect(draft()).toEqual(first);
    expect(lookups).toBe(1);
    resetDraftCache();
    expect(draft()).toEqual(first);
    expect(lookups).toBe(2);
  });

  it('reads a small tree\'s datastore continuations only as deep as its tier serves, and drafts the trees full-width continuations give', () => {
    const rand = seededRandom(31);
    // A small vocabulary and long shared stretches: deep continuations with many matches.
    const docs = Array.from({ length: 50 }, () => [1, ...tokenStream(rand, 300, 14)]);
    const store = Datastore.fromDocuments(docs, { indexer: 'inline' });
    const widths = new Map<number, number>();
    const tiered: DatastoreLike = {
      tokenCount: store.tokenCount,
      lookup(c, o, p) {
        widths.set(p?.maxMatches ?? -1, p?.width ?? -1);
        return store.lookup(c, o, p);
      },
    };
    // Every lookup at the full width: the reference trees.
    const full: DatastoreLike = { tokenCount: store.tokenCount, lookup: (c, o, p) => store.lookup(c, o, { ...p, width: defaultFusionWeights.datastoreWidth }) };
    for (let r = 0; r < 20; r++) {
      const prompt = docs[r].slice(0, 25 + (r % 5));
      const truth = docs[r].slice(prompt.length, prompt.length + 36);
      const a = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore: tiered });
      const b = new RequestDrafter({ method: 'sssd', promptIds: prompt, datastore: full });
      for (let i = 0; i < truth.length; i += 3) {
        const budget = [1, 2, 4, 6, 8, 10][i % 6];
        const ta = a.draft(budget);
        const tb = b.draft(budget);
        expect(paths(ta)).toEqual(paths(tb));
        expect(Array.from(ta.probs.subarray(0, ta.size))).toEqual(Array.from(tb.probs.subarray(0, tb.size)));
        a.accept(truth.slice(i, i + 3));
        b.accept(truth.slice(i, i + 3));
      }
    }
    // Tier 16 serves limits up to 8, tier 32 up to 16.
    expect(widths.get(DATASTORE_MATCH_TIERS[0])).toBe(DATASTORE_MATCH_TIERS[0] / 2);
    expect(widths.get(DATASTORE_MATCH_TIERS[1])).toBe(DATASTORE_MATCH_TIERS[1] / 2);
  });

  it('takes a long prompt in slices, one at construction and one per draft, and then drafts as if it had taken it whole', () => {
    const rand = seededRandom(11);
    // A story that repeats: the context trie has continuations for its tail.
    const story = tokenStream(rand, 600, 40);
    const prompt = [1, ...story, ...story, ...story, ...story, ...story, ...story.slice(0, 300)];
    const sliced = new RequestDrafter({ method: 'context', promptIds: prompt });
    // Construction indexes one slice: a 3,300-token prompt no longer costs its whole length up front.
    expect(sliced.queuedTokens).toBe(prompt.length - INDEX_SLICE);
    // The same tokens taken one slice and then token by token (each indexed as it comes).
    const steady = new RequestDrafter({ method: 'context', promptIds: prompt.slice(0, INDEX_SLICE) });
    steady.accept(prompt.slice(INDEX_SLICE));
    expect(steady.queuedTokens).toBe(0);
    const snapshot = (d: RequestDrafter) => {
      const t = d.draft(16);
      return { tokens: Array.from(t.tokens.subarray(0, t.size)), parents: Array.from(t.parents.subarray(0, t.size)) };
    };
    // Tokens emitted while the prompt is still going in wait their turn, in order.
    sliced.accept([story[300], story[301]]);
    steady.accept([story[300], story[301]]);
    expect(sliced.queuedTokens).toBe(prompt.length + 2 - INDEX_SLICE);
    const first = snapshot(sliced);
    expect(sliced.queuedTokens).toBe(0);
    expect(first).toEqual(snapshot(steady));
    expect(first.tokens.length).toBeGreaterThan(8);
    sliced.accept([story[302]]);
    steady.accept([story[302]]);
    expect(sliced.queuedTokens).toBe(0);
    expect(snapshot(sliced)).toEqual(snapshot(steady));
  });

  it('sizes the context trie for the length the request may reach, growing on demand up to the cap', () => {
    const rand = seededRandom(3);
    const window = defaultFusionWeights.contextWindow;
    const short = new RequestDrafter({ method: 'context', promptIds: [1, ...tokenStream(rand, 30, 50)] });
    // White-box: the proposer's trie (a short prompt must not pay for a large pool).
    const trieOf = (d: RequestDrafter) => (d as unknown as { proposer: { trie: { trie: { capacity: number; size: number } } } }).proposer.trie.trie;
    // Sized from the length it may reach, rounded up to the trie pool's size class (at most a quarter more).
    expect(trieOf(short).capacity).toBeLessThanOrEqual(trieCapacityClass(64 + window * (31 + 64), 1 << 20));
    for (let i = 0; i < 50; i++) short.accept(tokenStream(rand, 20, 50));
    expect(trieOf(short).size).toBeGreaterThan(trieCapacityClass(64 + window * (31 + 64), 1 << 20));
    // Told how long it may get, it is allocated once and never grows.
    const sized = new RequestDrafter({ method: 'context', promptIds: [1, ...tokenStream(rand, 30, 50)], expectedLength: 31 + 400 });
    const capacity = trieOf(sized).capacity;
    expect(capacity).toBeLessThanOrEqual(trieCapacityClass(64 + window * 431, 1 << 20));
    for (let i = 0; i < 20; i++) sized.accept(tokenStream(rand, 20, 50));
    expect(trieOf(sized).size).toBeGreaterThan(2000);
    expect(trieOf(sized).capacity).toBe(capacity);
    const capped = new RequestDrafter({ method: 'context', promptIds: [1, ...tokenStream(rand, 5000, 400)], maxTrieNodes: 3000 });
    expect(trieOf(capped).capacity).toBe(3000);
    expect(trieOf(capped).size).toBeLessThanOrEqual(3000);
  });
});
