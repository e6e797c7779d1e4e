import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { DatastoreSaver } from '../../../gpu-pool/datastore/datastore-saver';

const open: Datastore[] = [];
const track = (d: Datastore): Datastore => (open.push(d), d);
const made: string[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

const dir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'ds-saver-'));
  made.push(d);
  return d;
};
const continuation = (store: Datastore, query: number[]): number[] => {
  const out = store.lookup(query, undefined, { width: 3, maxMatches: 1, minMatches: 1 });
  return out.count === 0 ? [] : Array.from(out.tokens.subarray(0, 3));
};

describe('DatastoreSaver', () => {
  it('writes the loaded datastore plus every contributed output when the pool stops, and a reload finds them', async () => {
    const file = path.join(dir(), 'live.sssd-ds');
    const store = track(Datastore.fromDocuments([[1, 10, 11, 12, 13]], { vocabSize: 64, indexer: 'inline' }));
    const lines: string[] = [];
    const results: string[] = [];
    // FILE there (the one the pool loaded: it refuses any other at start) and nothing contributed: nothing to write.
    writeFileSync(file, 'as loaded');
    const saver = new DatastoreSaver(store, file, { intervalMs: 0, log: (l) => lines.push(l), onSaved: (r) => results.push(r) });
    await saver.stop();
    expect(readFileSync(file, 'utf8')).toBe('as loaded');
    expect(results).toEqual([]);
    rmSync(file);

    const again = new DatastoreSaver(store, file, { intervalMs: 0, log: (l) => lines.push(l), onSaved: (r) => results.push(r) });
    store.append([1, 20, 21, 22, 23]);
    again.noteContribution();
    expect(again.pending).toBe(1);
    // Still queued in the datastore when the pool stops: the save indexes it first.
    await again.stop();
    expect(again.pending).toBe(0);
    expect(results).toEqual(['ok']);
    expect(lines.at(-1)).toMatch(/datastore saved to .*live\.sssd-ds: \d+ tokens, .* 1 new outputs/);
    const reloaded = track(await Datastore.load(file));
    expect(reloaded.tokenCount).toBe(store.tokenCount);
    expect(continuation(reloaded, [20, 21])).toEqual([22, 23, -1]);
    expect(continuation(reloaded, [10, 11]).slice(0, 2)).toEqual([12, 13]);
  });

  it('writes FILE at stop where it is not there yet, contributions or none, so the next pool started with --datastore FILE starts (review h133)', async () => {
    for (const store of [track(Datastore.fromDocuments([[1, 10, 11, 12, 13]], { vocabSize: 64, indexer: 'inline' })), track(Datastore.empty({ vocabSize: 64, indexer: 'inline' }))]) {
      const file = path.join(dir(), 'first.sssd-ds');
      const results: string[] = [];
      await new DatastoreSaver(store, file, { intervalMs: 0, onSaved: (r) => results.push(r) }).stop();
      expect(results).toEqual(['ok']);
      const reloaded = track(await Datastore.load(file));
      expect(reloaded.tokenCount).toBe(store.tokenCount);
    }
  });

  it('saves on its interval only while contributions arrive', async () => {
    const file = path.join(dir(), 'periodic.sssd-ds');
    const store = track(Datastore.empty({ vocabSize: 64, indexer: 'inline' }));
    const results: string[] = [];
    const saver = new DatastoreSaver(store, file, { intervalMs: 20, onSaved: (r) => results.push(r) });
    await new Promise((r) => setTimeout(r, 80));
    expect(results).toEqual([]);
    store.append([1, 30, 31, 32]);
    saver.noteContribution();
    const until = Date.now() + 5000;
    while (results.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(results).toEqual(['ok']);
    await new Promise((r) => setTimeout(r, 80));
    expect(results).toEqual(['ok']);
    expect(continuation(track(await Datastore.load(file)), [30, 31])).toEqual([32, -1, -1]);
    await saver.stop();
    expect(results).toEqual(['ok']);
  });

  it('reports a failed save, keeps the outputs pending for the next one, and never throws', async () => {
    const store = track(Datastore.empty({ vocabSize: 64, indexer: 'inline' }));
    const lines: string[] = [];
    const results: string[] = [];
    const saver = new DatastoreSaver(store, '/nonexistent/dir/live.sssd-ds', { intervalMs: 0, log: (l) => lines.push(l), onSaved: (r) => results.push(r) });
    store.append([1, 40, 41]);
    saver.noteContribution();
    await saver.stop();
    expect(results).toEqual(['error']);
    expect(lines.at(-1)).toMatch(/cannot save the datastore to \/nonexistent\/dir\/live\.sssd-ds/);
    expect(saver.pending).toBe(1);
  });

  it("puts the pool's next-token table beside the file, so --datastore FILE finds it, whole: a half copy a crash left is replaced, one whole is left", async () => {
    const d = dir();
    const table = path.join(d, 'built.sssd-ds.next-tokens');
    writeFileSync(table, 'table bytes');
    const store = track(Datastore.empty({ vocabSize: 64, indexer: 'inline' }));
    const file = path.join(d, 'live.sssd-ds');
    const saver = new DatastoreSaver(store, file, { intervalMs: 0, nextTokensFile: table });
    store.append([1, 50, 51]);
    saver.noteContribution();
    await saver.save();
    expect(readFileSync(`${file}.next-tokens`, 'utf8')).toBe('table bytes');
    // The start of a copy a crash cut short (the next pool refused to start on it): replaced.
    writeFileSync(`${file}.next-tokens`, 'table');
    store.append([1, 52, 53]);
    saver.noteContribution();
    await saver.save();
    expect(readFileSync(`${file}.next-tokens`, 'utf8')).toBe('table bytes');
    // Whole (its size): left as it is, not copied at every save.
    writeFileSync(`${file}.next-tokens`, 'TABLE BYTES');
    store.append([1, 54, 55]);
    saver.noteContribution();
    await saver.stop();
    expect(readFileSync(`${file}.next-tokens`, 'utf8')).toBe('TABLE BYTES');
    // No temporary file stays beside it.
    expect(readdirSync(d).sort()).toEqual(['built.sssd-ds.next-tokens', 'live.sssd-ds', 'live.sssd-ds.next-tokens']);
  });

  it("counts a table that cannot be copied apart from the save: the datastore and its outputs are saved", async () => {
    const d = dir();
    const store = track(Datastore.empty({ vocabSize: 64, indexer: 'inline' }));
    const file = path.join(d, 'live.sssd-ds');
    const lines: string[] = [];
    const results: string[] = [];
    const saver = new DatastoreSaver(store, file, { intervalMs: 0, nextTokensFile: path.join(d, 'missing.next-tokens'), log: (l) => lines.push(l), onSaved: (r) => results.push(r) });
    for (const tokens of [[1, 50, 51], [1, 52, 53]]) {
      store.append(tokens);
      saver.noteContribution();
      await saver.save();
    }
    expect(results).toEqual(['ok', 'ok']);
    expect(saver.unsavedOutputs).toBe(0);
    // Said once, not at every save.
    expect(lines.filter((l) => l.includes('next-token table could not be copied'))).toHaveLength(1);
    expect(existsSync(file)).toBe(true);
  });
});
