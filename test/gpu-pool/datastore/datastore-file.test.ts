import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { DatastoreFileError, parseDatastoreFile } from '../../../gpu-pool/datastore/datastore-file';
import { randomDocuments, seededRandom } from './random-corpus';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sssd-ds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tokenizerSha256 = 'ab'.repeat(32);

async function savedStore(): Promise<{ store: Datastore; file: string; bytes: Buffer }> {
  const docs = randomDocuments(seededRandom(11), 300, 512);
  const store = Datastore.fromDocuments(docs, { vocabSize: 512, tokenizerSha256, chunkTokens: 4000 });
  const file = path.join(dir, `store-${Math.random().toString(36).slice(2)}.sssd-ds`);
  await store.save(file);
  return { store, file, bytes: await readFile(file) };
}

describe('datastore file', () => {
  it('round-trips chunks, suffix arrays and metadata, and answers lookups identically', async () => {
    const { store, file } = await savedStore();
    expect(store.chunkCount).toBeGreaterThan(1);
    const loaded = await Datastore.load(file, { expectVocabSize: 512, expectTokenizerSha256: tokenizerSha256 });
    expect(loaded.tokenCount).toBe(store.tokenCount);
    expect(loaded.vocabSize).toBe(512);
    expect(loaded.separatorId).toBe(1);
    expect(loaded.chunkTokens).toBe(4000);
    expect(loaded.tokenizerSha256).toBe(tokenizerSha256);
    loaded.indexedChunks.forEach((c, i) => {
      expect(Array.from(c.tokens)).toEqual(Array.from(store.indexedChunks[i].tokens));
      expect(Array.from(c.suffixArray)).toEqual(Array.from(store.indexedChunks[i].suffixArray));
    });
    const context = Array.from(store.indexedChunks[0].tokens.subarray(40, 46));
    const a = store.lookup(context);
    const b = loaded.lookup(context);
    expect(b.count).toBeGreaterThan(0);
    expect(Array.from(b.tokens.subarray(0, b.count * b.width))).toEqual(Array.from(a.tokens.subarray(0, a.count * a.width)));
    await loaded.close();
  });

  it('refuses a file whose checksum holds but whose contents a lookup would read out of bounds (a buggy or crafted writer)', async () => {
    const { store, file, bytes } = await savedStore();
    const headerBytes = bytes.readUInt32LE(12);
    const n = store.indexedChunks[0].tokens.length;
    /** `bytes` with `edit` applied and the checksum made to match again. */
    const resealed = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(bytes);
      edit(b);
      createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
      return b;
    };
    const cases: Array<[(b: Buffer) => void, RegExp]> = [
      [(b) => b.writeInt32LE(600, headerBytes), /token id 600 at position 0 is outside the vocabulary \(size 512\)/],
      [(b) => b.writeInt32LE(-7, headerBytes + 4), /token id -7 at position 1 is outside the vocabulary/],
      [(b) => b.writeInt32LE(100_000_000, headerBytes + 4 * n), /suffix array is not a permutation .* \(entry 0: 100000000\)/],
      [(b) => b.writeInt32LE(b.readInt32LE(headerBytes + 4 * n), headerBytes + 4 * n + 4), /suffix array is not a permutation .* \(entry 1: /],
      [(b) => b.writeInt32LE(99_999, 20), /separator id 99999 is outside the vocabulary \(size 512\)/],
    ];
    for (const [edit, said] of cases) {
      const bad = resealed(edit);
      expect(() => parseDatastoreFile(bad)).toThrow(said);
      await writeFile(file, bad);
      await expect(Datastore.load(file)).rejects.toThrow(said);
    }
  });

  it('round-trips an empty datastore', async () => {
    const file = path.join(dir, 'empty.sssd-ds');
    await Datastore.empty({ vocabSize: 105 }).save(file);
    const loaded = await Datastore.load(file);
    expect(loaded.tokenCount).toBe(0);
    expect(loaded.vocabSize).toBe(105);
    expect(loaded.lookup([1, 2]).count).toBe(0);
  });

  it('rejects a corrupt file (any flipped byte) with a checksum error', async () => {
    const { bytes } = await savedStore();
    for (const at of [70, Math.floor(bytes.length / 2), bytes.length - 40, bytes.length - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x5a;
      expect(() => parseDatastoreFile(bad), `byte ${at}`).toThrow(/checksum mismatch|damaged|truncated/);
    }
  });

  it('reads a corrupt file from disk (any flipped byte) as a checksum error, chunk by chunk', async () => {
    const { bytes, file } = await savedStore();
    for (const at of [20, 70, Math.floor(bytes.length / 2), bytes.length - 40, bytes.length - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x5a;
      await writeFile(file, bad);
      await expect(Datastore.load(file), `byte ${at}`).rejects.toThrow(/checksum mismatch|damaged|truncated|magic/);
    }
    await writeFile(file, bytes);
    expect((await Datastore.load(file)).tokenCount).toBeGreaterThan(0);
    await writeFile(file, bytes.subarray(0, 50));
    await expect(Datastore.load(file)).rejects.toThrow(/wrong magic/);
  });

  it('checks a file that does not record its vocabulary token by token against the model', async () => {
    const file = path.join(dir, 'no-vocab.sssd-ds');
    await Datastore.fromDocuments([[1, 5, 6, 7, 300, 8]], { indexer: 'inline' }).save(file);
    await expect(Datastore.load(file, { expectVocabSize: 256 })).rejects.toThrow(/holds token 300, outside the model's vocabulary of 256/);
    const loaded = await Datastore.load(file, { expectVocabSize: 512 });
    expect(loaded.vocabSize).toBe(512);
    expect(() => loaded.append([1, 600])).toThrow(RangeError);
  });

  it('rejects a truncated file, a foreign file and another version, with clear errors', async () => {
    const { bytes, file } = await savedStore();
    await writeFile(file, bytes.subarray(0, bytes.length - 100));
    await expect(Datastore.load(file)).rejects.toThrow(/truncated/);
    await writeFile(file, '{"text": "Once upon a time"}\n'.repeat(10));
    await expect(Datastore.load(file)).rejects.toThrow(DatastoreFileError);
    await expect(Datastore.load(file)).rejects.toThrow(/not a usable SSSD datastore: wrong magic/);
    const future = Buffer.from(bytes);
    future.writeUInt32LE(99, 8);
    expect(() => parseDatastoreFile(future)).toThrow(/format version 99/);
    await expect(Datastore.load(path.join(dir, 'missing.sssd-ds'))).rejects.toThrow(/no such file/);
  });

  it('rejects a file built for another vocabulary or tokenizer', async () => {
    const { file } = await savedStore();
    await expect(Datastore.load(file, { expectVocabSize: 105 })).rejects.toThrow(/vocabulary of 512 tokens, but the model has 105/);
    await expect(Datastore.load(file, { expectTokenizerSha256: 'cd'.repeat(32) })).rejects.toThrow(/different tokenizer/);
  });

  it('marks the chunks of contributed outputs, so restarts keep them under the cap and extend the newest', async () => {
    const built = Datastore.fromDocuments(randomDocuments(seededRandom(5), 40, 512), { vocabSize: 512, chunkTokens: 1000 });
    const file = path.join(dir, 'restarts.sssd-ds');
    await built.save(file);
    expect((await readFile(file)).readUInt32LE(8)).toBe(1); // nothing contributed: the version older builds read
    const builtChunks = built.chunkCount;
    const doc = (run: number, i: number): number[] => [1, 200 + run, 300 + i, 400 + run, 450 + i];
    // Each run loads the file, contributes 30 documents of 5 tokens (150 tokens; 40 to a chunk of 200), saves.
    for (let run = 0; run < 6; run++) {
      const store = await Datastore.load(file, { chunkTokens: 200, maxChunks: 3, indexer: 'inline' });
      for (let i = 0; i < 30; i++) store.append(doc(run, i));
      await store.flush();
      await store.save(file);
      await store.close();
    }
    const contents = parseDatastoreFile(await readFile(file));
    expect(contents.formatVersion).toBe(2);
    expect(contents.builtChunks).toBe(builtChunks);
    // 900 tokens contributed fill 4.5 chunks of 200 (six, had each run opened its own); the cap keeps the newest 3.
    expect(contents.chunks.length).toBe(builtChunks + 3);
    expect(contents.chunks.slice(builtChunks).map((c) => c.tokens.length)).toEqual([200, 200, 100]);
    const loaded = await Datastore.load(file);
    expect(loaded.indexedChunks.slice(0, builtChunks)).toHaveLength(builtChunks);
    // The newest contributions are kept, the oldest dropped, the built chunks all there.
    const one = { minMatches: 1 };
    const found = (q: number[]): number[] => {
      const m = loaded.lookup(q, undefined, one);
      return m.count === 0 ? [] : [m.matchLengths[0], m.tokens[0]];
    };
    expect(found([205, 329, 405])).toEqual([3, 479]);
    expect(found([200, 300, 400])[0]).toBeLessThan(3);
    const first = built.indexedChunks[0].tokens;
    expect(found(Array.from(first.subarray(3, 9)))).toEqual([6, first[9]]);
  });

  it('rejects a header that puts a built chunk after contributed ones', async () => {
    const store = Datastore.fromDocuments(randomDocuments(seededRandom(6), 20, 512), { vocabSize: 512, chunkTokens: 100, indexer: 'inline' });
    store.append([1, 500, 501, 502]);
    await store.flush();
    const file = path.join(dir, 'marked.sssd-ds');
    await store.save(file);
    const bytes = Buffer.from(await readFile(file));
    expect(parseDatastoreFile(bytes).builtChunks).toBe(store.chunkCount - 1);
    bytes.writeUInt32LE((bytes.readUInt32LE(64) | 0x80000000) >>> 0, 64); // the first chunk marked contributed
    expect(() => parseDatastoreFile(bytes)).toThrow(/a built chunk after contributed ones/);
  });

  it('saves what was appended live, so a restart keeps it', async () => {
    const store = Datastore.empty({ vocabSize: 512, indexer: 'inline' });
    store.append([1, 300, 301, 302]);
    await store.flush();
    const file = path.join(dir, 'live.sssd-ds');
    await store.save(file);
    const loaded = await Datastore.load(file);
    expect(loaded.lookup([300, 301]).tokens[0]).toBe(302);
  });
});
