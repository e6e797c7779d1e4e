import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { indexChunk } from '../../../gpu-pool/datastore/datastore-chunk';
import { randomDocuments, seededRandom } from './random-corpus';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const open: Datastore[] = [];
const track = (d: Datastore): Datastore => (open.push(d), d);

afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
});

describe('Datastore appends', () => {
  it('starts empty and learns appended outputs after the background rebuild (cold start)', async () => {
    const store = track(Datastore.empty({ vocabSize: 512 }));
    expect(store.tokenCount).toBe(0);
    expect(store.lookup([1, 20, 21]).count).toBe(0);
    const generation = store.generation;
    store.append([1, 20, 21, 22, 23]);
    store.append([20, 21, 24, 1]);
    expect(store.pendingTokens).toBe(9);
    expect(store.lookup([20, 21]).count).toBe(0); // not searchable yet
    expect(store.generation).toBe(generation);
    await store.flush();
    expect(store.generation).toBeGreaterThan(generation); // drafters must not reuse older lookups
    expect(store.pendingTokens).toBe(0);
    expect(store.tokenCount).toBe(10); // 1 20 21 22 23 1 20 21 24 1
    const out = store.lookup([20, 21], undefined, { width: 2 });
    const conts = [0, 1].map((i) => Array.from(out.tokens.subarray(i * 2, i * 2 + 2))).sort((a, b) => a[0] - b[0]);
    expect(conts).toEqual([
      [22, 23],
      [24, 1],
    ]);
  });

  it('keeps answering lookups from the old index while a worker rebuilds, then swaps in the new one', async () => {
    const next = seededRandom(7);
    const base = randomDocuments(next, 4000, 500, 60); // ~240K tokens: the rebuild takes a while
    // Appended, not made with: appends extend (and re-index) only a chunk of appended outputs.
    const store = track(Datastore.empty({ vocabSize: 512 }));
    for (const doc of base) store.append(doc);
    await store.flush();
    const known = base[10].slice(1, 6);
    const before = store.lookup(known);
    const beforeTokens = Array.from(before.tokens.subarray(0, before.count * before.width));
    const tokensBefore = store.tokenCount;

    const novel = [1, 510, 511, 509, 508, 507];
    store.append(novel);
    const done = store.whenIdle();
    let settled = false;
    void done.then(() => (settled = true));
    let lookupsDuringRebuild = 0;
    while (!settled) {
      // The event loop keeps turning during the rebuild and lookups see the old, complete index.
      const old = store.lookup([510, 511]);
      if (store.tokenCount === tokensBefore) {
        expect(old.count).toBe(0);
        const again = store.lookup(known);
        expect(Array.from(again.tokens.subarray(0, again.count * again.width))).toEqual(beforeTokens);
        lookupsDuringRebuild++;
      }
      await turn();
    }
    await done;
    expect(lookupsDuringRebuild).toBeGreaterThan(3);
    // One separator joins the stories: the novel one's own, or the one the last story ended with.
    expect(store.tokenCount).toBeGreaterThanOrEqual(tokensBefore + novel.length - 1);
    expect(store.tokenCount).toBeLessThanOrEqual(tokensBefore + novel.length);
    const fresh = store.lookup([510, 511], undefined, { width: 3 });
    expect(fresh.count).toBe(1);
    expect(Array.from(fresh.tokens.subarray(0, 3))).toEqual([509, 508, 507]);
    // Old content is still there after the swap.
    const after = store.lookup(known);
    expect(after.count).toBeGreaterThanOrEqual(before.count);
  });

  it('opens new chunks past the chunk size and drops the oldest past the cap', async () => {
    const store = track(Datastore.empty({ chunkTokens: 12, maxChunks: 2, indexer: 'inline' }));
    // Each document: a unique marker pair then its number; 5 tokens with its separator.
    const doc = (i: number): number[] => [100 + i, 200 + i, 300 + i, 400 + i];
    for (let i = 0; i < 8; i++) {
      store.append(doc(i));
      await store.flush();
      expect(store.chunkCount).toBeLessThanOrEqual(2);
    }
    // Chunks hold two documents each (10 tokens): [0,1] [2,3] [4,5] [6,7]; only the last two remain.
    expect(store.chunkCount).toBe(2);
    expect(store.tokenCount).toBe(20);
    for (let i = 0; i < 8; i++) {
      const found = store.lookup([100 + i, 200 + i]).count;
      expect(found, `document ${i}`).toBe(i >= 4 ? 1 : 0);
    }
  });

  it('batches appends made while a rebuild runs into the next one and loses none', async () => {
    const store = track(Datastore.empty());
    for (let i = 0; i < 20; i++) {
      store.append([1, 50 + i, 90, 91]);
      if (i % 5 === 0) await turn();
    }
    await store.whenIdle();
    expect(store.tokenCount).toBe(80);
    expect(store.lookup([90], undefined, { maxMatches: 100 }).count).toBe(20);
  });

  it('never drops nor extends the chunks it was made with; the cap counts appended chunks', async () => {
    const made = [0, 1, 2].map((i) => indexChunk(Int32Array.from([1, 10 + i, 20 + i, 1])));
    const store = track(Datastore.fromChunks(made, { chunkTokens: 12, maxChunks: 2, indexer: 'inline' }));
    expect(store.chunkCount).toBe(3); // more than maxChunks, all kept
    const doc = (i: number): number[] => [100 + i, 200 + i, 300 + i, 400 + i];
    for (let i = 0; i < 8; i++) {
      store.append(doc(i));
      await store.flush();
    }
    expect(store.indexedChunks.slice(0, 3)).toEqual(made);
    expect(store.chunkCount).toBe(5);
    for (let i = 0; i < 3; i++) expect(store.lookup([10 + i, 20 + i]).count, `made ${i}`).toBe(1);
    for (let i = 0; i < 8; i++) expect(store.lookup([100 + i, 200 + i]).count, `appended ${i}`).toBe(i >= 4 ? 1 : 0);
  });

  it('leaves a chunk bigger than the append size untouched and appends into a new one', async () => {
    const big = indexChunk(Int32Array.from(randomDocuments(seededRandom(3), 50, 100).flat()));
    const store = track(Datastore.fromChunks([big], { chunkTokens: 64, indexer: 'inline' }));
    store.append([1, 150, 151, 152]);
    await store.flush();
    expect(store.chunkCount).toBe(2);
    expect(store.indexedChunks[0]).toBe(big);
    expect(Array.from(store.indexedChunks[1].tokens)).toEqual([1, 150, 151, 152]);
  });

  describe('the indexer rests between rebuilds (indexerDuty)', () => {
    // ~240K tokens: each rebuild of the live chunk takes a few ms at least.
    const big = (): number[][] => randomDocuments(seededRandom(11), 4000, 500, 60);

    /** Appends one document, and another while the first one's rebuild runs; resolves when the first rebuild is in. */
    const twoRebuilds = async (store: Datastore): Promise<{ firstSeconds: number; firstAt: number }> => {
      const { rebuilds, seconds } = store.indexing;
      store.append([1, 510 - rebuilds, 511, 509]);
      await turn(); // the rebuild starts
      store.append([1, 508, 507, 506]);
      while (store.indexing.rebuilds === rebuilds) await turn();
      return { firstSeconds: store.indexing.seconds - seconds, firstAt: performance.now() };
    };

    it('waits (1/duty - 1) times the last rebuild before the next, and counts them', async () => {
      const store = track(Datastore.fromChunks([], { vocabSize: 512, indexerDuty: 0.2 }));
      for (const doc of big()) store.append(doc);
      await store.flush();
      const { firstSeconds, firstAt } = await twoRebuilds(store);
      expect(store.lookup([509, 511]).count).toBe(1);
      expect(store.lookup([508, 507]).count).toBe(0); // waiting for the next rebuild
      expect(store.indexing.pendingTokens).toBe(4);
      await store.whenIdle();
      // The rest alone is 4x the first rebuild; timers fire no earlier than asked (1 ms of rounding).
      expect(performance.now() - firstAt).toBeGreaterThanOrEqual(4 * firstSeconds * 1000 - 1);
      expect(store.lookup([508, 507]).count).toBe(1);
      expect(store.indexing).toMatchObject({ rebuilds: 3, pendingTokens: 0 });
    });

    it('flush cuts the rest short, and close does not wait for it', async () => {
      const store = track(Datastore.fromChunks([], { vocabSize: 512, indexerDuty: 0.001 }));
      for (const doc of big()) store.append(doc);
      await store.flush();
      const { firstSeconds } = await twoRebuilds(store);
      const rest = 999 * firstSeconds * 1000; // seconds, at the least
      const started = performance.now();
      await store.flush();
      expect(performance.now() - started).toBeLessThan(rest / 4);
      expect(store.lookup([508, 507]).count).toBe(1);

      await twoRebuilds(store); // resting again
      expect(store.indexing.pendingTokens).toBe(4);
      const closing = performance.now();
      await store.close();
      await store.whenIdle();
      expect(performance.now() - closing).toBeLessThan(rest / 4);
    });

    it('rejects a duty outside (0, 1]', () => {
      expect(() => Datastore.empty({ indexerDuty: 0 })).toThrow(/indexerDuty/);
      expect(() => Datastore.empty({ indexerDuty: 1.5 })).toThrow(/indexerDuty/);
    });
  });

  it('does not count a rebuild that close cuts off', async () => {
    // Two chunks' worth: close() lands while the first chunk's index is being built.
    const store = track(Datastore.fromChunks([], { vocabSize: 512, chunkTokens: 4, indexer: 'inline' }));
    store.append([1, 10, 11, 12]);
    store.append([1, 20, 21, 22]);
    await turn(); // the rebuild has started
    expect(store.indexing.pendingTokens).toBe(0);
    await store.close();
    await store.whenIdle();
    expect(store.indexing).toMatchObject({ rebuilds: 0, seconds: 0 });
    expect(store.tokenCount).toBe(0);
  });

  it('ignores appends after close and keeps serving lookups', async () => {
    const store = Datastore.fromDocuments([[1, 5, 6]]);
    await store.close();
    store.append([1, 5, 7]);
    await store.whenIdle();
    expect(store.tokenCount).toBe(3);
    expect(store.lookup([5]).count).toBe(1);
  });
});
