import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildChunksFromJsonl } from '../../../gpu-pool/datastore/corpus-builder';
import { readCorpusDistributions } from '../../../gpu-pool/datastore/corpus-distributions';
import { NextTokenTableBuilder } from '../../../shared/drafting/next-token-table';
import { useStoriesModel } from './stories-model';

const model = useStoriesModel('sssd-corpus-dist-');

/** The model's probabilities for the token after doc[0..end), from a pass of its own. */
async function modelProbs(doc: Int32Array, end: number): Promise<Float32Array> {
  const cache = model.runner.newSequence(end);
  try {
    const tokens = doc.slice(0, end);
    const parents = Int32Array.from(tokens, (_, i) => i - 1);
    const step = await model.runner.step([{ cache, row: { tokens, parents } }]);
    const logits = step.logitsAt(0, end - 1);
    let max = -Infinity;
    for (const x of logits) max = Math.max(max, x);
    const p = Float32Array.from(logits, (x) => Math.exp(x - max));
    const sum = p.reduce((s, x) => s + x, 0);
    return p.map((x) => x / sum);
  } finally {
    cache.release();
  }
}

describe('readCorpusDistributions', () => {
  it("puts the model's own distribution at every position of a document into the table", async () => {
    const doc = Int32Array.from(model.tokenizer.encode('Tom had a red ball. He threw it high and the dog ran after it.', { bos: true }));
    const builder = new NextTokenTableBuilder(model.runner.config.vocabSize);
    // Read twice: contexts of 3+ tokens are kept from two positions on.
    expect(await readCorpusDistributions(model.runner, [doc, doc], builder)).toBe(2 * (doc.length - 1));
    const table = builder.build();
    for (const end of [2, 5, doc.length - 1]) {
      const e = table.lookup(doc, end);
      expect(e).toBeGreaterThanOrEqual(0);
      const p = await modelProbs(doc, end);
      for (let i = 0; i < table.candidateCount(e); i++) expect(table.probAt(e, i)).toBeCloseTo(p[table.tokenAt(e, i)], 4);
      const best = p.indexOf(Math.max(...p));
      expect(table.tokenAt(e, 0)).toBe(best);
    }
  });

  it('reads documents of every length over several passes, clipped to the context, skipping those too short to predict', async () => {
    const ctx = model.runner.config.contextLength;
    const long = Int32Array.from({ length: ctx + 40 }, (_, i) => 1 + ((i * 7) % 300));
    const docs = [long, new Int32Array([1]), ...Array.from({ length: 40 }, (_, d) => Int32Array.from({ length: 20 + d * 3 }, (_, i) => 1 + ((i + d) % 200)))];
    const passes: number[] = [];
    const added = await readCorpusDistributions(model.runner, docs, new NextTokenTableBuilder(model.runner.config.vocabSize), (done) => passes.push(done));
    const expected = ctx - 1 + docs.slice(2).reduce((s, d) => s + d.length - 1, 0);
    expect(added).toBe(expected);
    // Progress starts at 0 and ends at every readable document; the long one needs a pass of its own.
    expect(passes[0]).toBe(0);
    expect(passes[passes.length - 1]).toBe(docs.length - 1);
    expect(passes.length).toBeGreaterThan(2);
  });
});

describe('datastore build reading the corpus', () => {
  it("adds the documents' own contexts to the next-token table, and leaves them out when told", async () => {
    const corpus = path.join(model.dir, 'corpus.jsonl');
    // The second document has no sentence end: no opening, so no continuation visits its text.
    const texts = ['Lily saw a cat. The cat was sad.', 'zebra quilt jumps over seven violet kettles'];
    await writeFile(corpus, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const build = (readCorpus: boolean) =>
      buildChunksFromJsonl({ input: corpus, tokenizer: model.tokenizer, selfContinuations: { runner: model.runner, options: { openings: 1, sampledTemperatures: [], maxTokens: 10, readCorpus } } });
    const withCorpus = await build(true);
    const without = await build(false);
    const odd = model.tokenizer.encode(texts[1], { bos: true });
    const end = odd.length - 1;
    expect(without.nextTokens!.lookup(odd, end)).toBe(-1);
    const e = withCorpus.nextTokens!.lookup(odd, end);
    expect(e).toBeGreaterThanOrEqual(0);
    expect(withCorpus.nextTokens!.lastOrder).toBe(2);
    expect(withCorpus.nextTokens!.size).toBeGreaterThan(without.nextTokens!.size);
    // The datastore's text is the same either way: reading only feeds the table.
    expect(withCorpus.tokens).toBe(without.tokens);
  });
});
