import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NextTokenFileError,
  NextTokenModelError,
  nextTokenTablePath,
  nextTokenTableCorpusPositions,
  openNextTokenTable,
  readNextTokenTable,
  writeNextTokenTable,
} from '../../../gpu-pool/datastore/next-token-table-file';
import { NextTokenTableBuilder, type NextTokenTable } from '../../../shared/drafting/next-token-table';

const V = 32;
const MODEL = '12'.repeat(32);
const OTHER = '34'.repeat(32);
let dir = '';
let table: NextTokenTable;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sssd-ntt-'));
  const b = new NextTokenTableBuilder(V);
  for (let a = 0; a < V; a++) {
    const logits = new Float32Array(V).fill(-20);
    logits[(a * 7) % V] = 2;
    logits[(a * 3) % V] = 1;
    b.add([a, (a + 1) % V], 2, logits);
  }
  table = b.build();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('next-token table file', () => {
  it('reads back what was written: the same contexts, candidates and probabilities', async () => {
    const file = path.join(dir, 'a.next-tokens');
    const bytes = await writeNextTokenTable(file, table, { vocabSize: V, tokenizerSha256: 'ab'.repeat(32), modelSha256: MODEL });
    expect(bytes).toBe((await readFile(file)).length);
    const back = await readNextTokenTable(file, { vocabSize: V, tokenizerSha256: 'AB'.repeat(32), modelSha256: MODEL });
    expect(back.size).toBe(table.size);
    for (let a = 0; a < V; a++) {
      const ctx = [a, (a + 1) % V];
      const e = back.lookup(ctx, 2);
      const f = table.lookup(ctx, 2);
      for (let c = 0; c < back.candidates; c++) {
        expect(back.tokenAt(e, c)).toBe(table.tokenAt(f, c));
        expect(back.probAt(e, c)).toBe(table.probAt(f, c));
      }
      expect(back.tokenAt(e, 0)).toBe((a * 7) % V);
    }
  });

  it('says how many corpus positions a table read, from its header alone; null for a table from before, or a stranger', async () => {
    const read = path.join(dir, 'read.next-tokens');
    const none = path.join(dir, 'none.next-tokens');
    const old = path.join(dir, 'old.next-tokens');
    const stranger = path.join(dir, 'stranger.next-tokens');
    await writeNextTokenTable(read, table, { vocabSize: V, tokenizerSha256: '', modelSha256: MODEL, corpusPositions: 380_000 });
    await writeNextTokenTable(none, table, { vocabSize: V, tokenizerSha256: '', modelSha256: MODEL, corpusPositions: 0 });
    await writeNextTokenTable(old, table, { vocabSize: V, tokenizerSha256: '', modelSha256: MODEL });
    await writeFile(stranger, 'not a table at all');
    expect(await nextTokenTableCorpusPositions(read)).toBe(380_000);
    expect(await nextTokenTableCorpusPositions(none)).toBe(0);
    expect(await nextTokenTableCorpusPositions(old)).toBeNull();
    expect(await nextTokenTableCorpusPositions(stranger)).toBeNull();
    expect(await nextTokenTableCorpusPositions(path.join(dir, 'missing.next-tokens'))).toBeNull();
    // The field does not change what the table holds.
    expect((await readNextTokenTable(read)).size).toBe((await readNextTokenTable(old)).size);
  });

  it('refuses a table for another vocabulary, tokenizer or model, a truncated file and a stranger', async () => {
    const file = path.join(dir, 'b.next-tokens');
    await writeNextTokenTable(file, table, { vocabSize: V, tokenizerSha256: 'ab'.repeat(32), modelSha256: MODEL });
    await expect(readNextTokenTable(file, { vocabSize: V + 1 })).rejects.toThrow(/vocabulary of 32 tokens, but the model has 33/);
    await expect(readNextTokenTable(file, { tokenizerSha256: 'cd'.repeat(32) })).rejects.toThrow(/different tokenizer/);
    await expect(readNextTokenTable(file, { modelSha256: OTHER })).rejects.toThrow(NextTokenModelError);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 4));
    await expect(readNextTokenTable(file)).rejects.toThrow(NextTokenFileError);
    await writeFile(file, 'not a table at all');
    await expect(readNextTokenTable(file)).rejects.toThrow(/not a next-token table/);
    // Damaged probabilities (the file has no checksum): they drafted nothing, without a word.
    const nan = Buffer.from(bytes);
    nan.writeFloatLE(Number.NaN, nan.length - 4);
    await writeFile(file, nan);
    await expect(readNextTokenTable(file)).rejects.toThrow(/damaged: probability NaN/);
    const overfull = Buffer.from(bytes);
    overfull.writeFloatLE(0.9, overfull.length - 4);
    overfull.writeFloatLE(0.9, overfull.length - 8);
    await writeFile(file, overfull);
    const err = await readNextTokenTable(file).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/damaged: the probabilities of context \d+ add up to [12]\.\d{3}/);
  });

  it("opens the datastore's own table by default, none on request, and an explicit file that must exist", async () => {
    const datastore = path.join(dir, 'store.sssd-ds');
    expect(await openNextTokenTable(undefined, datastore, {})).toBeNull(); // no table beside it: none
    await writeNextTokenTable(nextTokenTablePath(datastore), table, { vocabSize: V, tokenizerSha256: '', modelSha256: MODEL });
    expect((await openNextTokenTable(undefined, datastore, { vocabSize: V, modelSha256: MODEL }))?.size).toBe(table.size);
    expect(await openNextTokenTable('none', datastore, {})).toBeNull();
    await expect(openNextTokenTable(path.join(dir, 'missing'), datastore, {})).rejects.toThrow();
  });

  it("skips the datastore's own table when another model wrote it, but refuses one named for the wrong model", async () => {
    const datastore = path.join(dir, 'shared.sssd-ds');
    await writeNextTokenTable(nextTokenTablePath(datastore), table, { vocabSize: V, tokenizerSha256: '', modelSha256: MODEL });
    const skipped: string[] = [];
    expect(await openNextTokenTable(undefined, datastore, { modelSha256: OTHER }, (why) => skipped.push(why))).toBeNull();
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(/another model's distributions .*drafting without it/);
    await expect(openNextTokenTable(nextTokenTablePath(datastore), undefined, { modelSha256: OTHER })).rejects.toThrow(NextTokenModelError);
  });
});
