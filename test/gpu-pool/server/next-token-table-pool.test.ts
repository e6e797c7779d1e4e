/**
 * The next-token table through the real pool: `datastore build --model`
 * writes it beside the datastore, the pool picks it up, and sampled requests
 * drafted from it come out token for token as without speculation (their
 * noise is tied to positions, so a seed fixes the text whatever drafts).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNextTokenTable, writeNextTokenTable } from '../../../gpu-pool/datastore/next-token-table-file';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { models, repoRoot, requireSharedData, workloads } from '../../support/shared-data';
import { generate, metricValue, startPool, type GenerateBody, type PoolProcess } from './pool-process';

let dir = '';
let pool: PoolProcess;
let openings: number[][] = [];
let store = '';
beforeAll(async () => {
  requireSharedData();
  dir = await mkdtemp(path.join(tmpdir(), 'sssd-ntt-pool-'));
  const lines = (await readFile(workloads.datastoreCorpus, 'utf8')).split('\n').filter(Boolean).slice(0, 40);
  const corpus = path.join(dir, 'corpus.jsonl');
  await writeFile(corpus, lines.join('\n') + '\n');
  store = path.join(dir, 'store.sssd-ds');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      path.join(repoRoot, 'bin/sssd.mjs'),
      'datastore',
      'build',
      '--tokenizer',
      models.stories260K.tokenizer,
      '--input',
      corpus,
      '--out',
      store,
      '--model',
      models.stories260K.checkpoint,
      '--self-openings',
      '1',
      '--self-temperatures',
      '0.7,1',
      '--self-max-tokens',
      '80',
    ],
    { cwd: repoRoot },
  );
  expect(stdout).toMatch(/store\.sssd-ds\.next-tokens: the model's next-token distributions for \d+ contexts/);
  pool = await startPool(['--datastore', store]);
  const tokenizer = loadTokenizer(new Uint8Array(await readFile(models.stories260K.tokenizer)));
  openings = lines.slice(0, 6).map((l) => tokenizer.encode(`${(JSON.parse(l) as { text: string }).text.split('.')[0]}.`, { bos: true }));
}, 120_000);
afterAll(async () => {
  await pool?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("the model's next-token table in the pool", () => {
  it('is loaded from beside the datastore, and sampled requests drafted from it lose nothing', async () => {
    expect(pool.stderr()).toMatch(/next-token table of \d+ contexts drafts for sampled requests/);
    expect(pool.stderr()).not.toMatch(/predates tables that read the corpus/);
    // Every line of the pool's log says when it was written.
    expect(pool.stderr()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pool: next-token table of/m);
    expect(pool.stderr()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pool: stories260K on cpu/m);
    const body = (i: number, speculation: 'off' | 'sssd'): GenerateBody => ({
      id: `ntt-${speculation}-${i}`,
      promptIds: openings[i],
      maxTokens: 60,
      sampling: { temperature: i % 2 === 0 ? 1 : 0.7, topP: i % 3 === 0 ? 0.9 : 1, seed: 1000 + i },
      speculation,
      useDatastore: true,
    });
    const all = openings.flatMap((_, i) => [body(i, 'sssd'), body(i, 'off')]);
    const results = await Promise.all(all.map((b) => generate(pool, b)));
    let accepted = 0;
    for (let i = 0; i < openings.length; i++) {
      const sssd = results[2 * i];
      const off = results[2 * i + 1];
      expect(sssd.status).toBe(200);
      expect(sssd.ids.length).toBeGreaterThan(0);
      expect(sssd.ids, `request ${i}`).toEqual(off.ids);
      for (const e of sssd.events) if (e.type === 'tokens') accepted += e.accepted;
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it('drafts chains from it for a batch too wide for the fused drafter, greedy and sampled, losing nothing', async () => {
    // 40 rows at once: on a CPU the fused drafter sits out (a second token per
    // row costs more than a tenth of the step), and the governor tries chains.
    const body = (i: number, speculation: 'off' | 'sssd'): GenerateBody => ({
      id: `wide-${speculation}-${i}`,
      promptIds: openings[i % openings.length],
      maxTokens: 60,
      ...(i % 3 === 2 ? { sampling: { temperature: 0.8, topP: 0.95, seed: 300 + i } } : {}),
      speculation,
      useDatastore: true,
    });
    const before = await metricValue(pool, 'sssd_pool_speculating_steps_total', 'drafter="chain"');
    const all = Array.from({ length: 20 }, (_, i) => [body(i, 'sssd'), body(i, 'off')]).flat();
    const results = await Promise.all(all.map((b) => generate(pool, b)));
    for (let i = 0; i < 20; i++) {
      expect(results[2 * i].status).toBe(200);
      expect(results[2 * i].ids.length).toBeGreaterThan(0);
      expect(results[2 * i].ids, `request ${i}`).toEqual(results[2 * i + 1].ids);
    }
    expect(await metricValue(pool, 'sssd_pool_speculating_steps_total', 'drafter="chain"')).toBeGreaterThan(before);
  });

  it('named by hand and built before tables read the corpus, it serves, with a word on rebuilding it', async () => {
    // The same table as an older build writes it: a header without the corpus's positions.
    const file = `${store}.next-tokens`;
    const bytes = await readFile(file);
    const header = JSON.parse(bytes.toString('utf8', 12, 12 + bytes.readUInt32LE(8))) as { vocabSize: number; tokenizerSha256: string; modelSha256: string; corpusPositions?: number };
    expect(header.corpusPositions).toBeGreaterThan(0);
    const older = path.join(dir, 'older.next-tokens');
    await writeNextTokenTable(older, await readNextTokenTable(file), { vocabSize: header.vocabSize, tokenizerSha256: header.tokenizerSha256, modelSha256: header.modelSha256 });
    const old = await startPool(['--datastore', store, '--next-tokens', older]);
    try {
      expect(old.stderr()).toMatch(/next-token table of \d+ contexts drafts for sampled requests/);
      expect(old.stderr()).toMatch(/older\.next-tokens predates tables that read the corpus through the model .*rebuilding it/);
      const r = await generate(old, { id: 'older', promptIds: openings[1], maxTokens: 8, sampling: { temperature: 1, seed: 3 }, speculation: 'sssd', useDatastore: true });
      expect(r.ids.length).toBe(8);
    } finally {
      await old.stop();
    }
  });

  it("is skipped, with a word, by a pool serving another model on the same tokenizer; named, it stops the start", async () => {
    const other = await startPool(['--model', models.llama2xs.checkpoint, '--datastore', store]);
    try {
      expect(other.stderr()).toMatch(/holds another model's distributions .*drafting without it/);
      expect(other.stderr()).not.toMatch(/next-token table of/);
      const r = await generate(other, { id: 'xs', promptIds: openings[0], maxTokens: 8, sampling: { temperature: 1, seed: 3 }, speculation: 'sssd', useDatastore: true });
      expect(r.ids.length).toBeGreaterThan(0);
    } finally {
      await other.stop();
    }
    await expect(startPool(['--model', models.llama2xs.checkpoint, '--datastore', store, '--next-tokens', `${store}.next-tokens`])).rejects.toThrow(
      /cannot load the next-token table: .*another model's distributions.*--next-tokens none/,
    );
  });
});
