import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildChunksFromJsonl } from '../../../gpu-pool/datastore/corpus-builder';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { readNextTokenTable } from '../../../gpu-pool/datastore/next-token-table-file';
import { generateSelfContinuations, selfContinuationJobs, storyOpenings } from '../../../gpu-pool/datastore/self-continuations';
import { generate } from '../../../gpu-pool/runtime/generate';
import { models, repoRoot } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';
import { useStoriesModel } from './stories-model';

const STORIES = [
  'Tom had a red ball. He threw it high! "Catch it," said Mia. They laughed.',
  'Lily saw a cat. The cat was sad?',
  'no sentence end here',
];

const model = useStoriesModel('sssd-self-');

describe('storyOpenings', () => {
  it('gives the first 1..n sentences as growing prefixes, closing quotes kept', () => {
    expect(storyOpenings(STORIES[0], 3)).toEqual([
      'Tom had a red ball.',
      'Tom had a red ball. He threw it high!',
      'Tom had a red ball. He threw it high! "Catch it," said Mia.',
    ]);
    expect(storyOpenings('"Hi!" Ben said. Bye.', 1)).toEqual(['"Hi!"']);
    expect(storyOpenings(STORIES[1], 5)).toEqual(['Lily saw a cat.', 'Lily saw a cat. The cat was sad?']);
    expect(storyOpenings(STORIES[2], 3)).toEqual([]);
  });
});

describe('selfContinuationJobs', () => {
  it('continues every opening greedily and samples the first one per extra temperature, with fixed seeds', () => {
    const jobs = selfContinuationJobs(STORIES, model.tokenizer, 512, { openings: 2, sampledTemperatures: [0, 0.7, 1], maxTokens: 50 });
    // Story 0: 2 greedy + 2 sampled; story 1: 2 greedy + 2 sampled; story 2: no opening.
    expect(jobs).toHaveLength(8);
    expect(jobs.map((j) => j.temperature)).toEqual([0, 0.7, 1, 0, 0, 0.7, 1, 0]);
    expect(jobs[0].promptIds).toEqual(model.tokenizer.encode('Tom had a red ball.', { bos: true }));
    expect(jobs[1].promptIds).toEqual(jobs[0].promptIds);
    expect(jobs.every((j) => j.maxTokens === 50)).toBe(true);
    const seeds = jobs.filter((j) => j.temperature! > 0).map((j) => j.seed);
    expect(new Set(seeds).size).toBe(4);
    expect(selfContinuationJobs(STORIES, model.tokenizer, 512, { openings: 2, sampledTemperatures: [0, 0.7, 1], maxTokens: 50 })).toEqual(jobs);
  });

  it('clips continuations to the context and skips openings longer than it', () => {
    const jobs = selfContinuationJobs(STORIES, model.tokenizer, 9, { openings: 3, sampledTemperatures: [], maxTokens: 200 });
    for (const j of jobs) {
      expect(j.promptIds.length).toBeLessThan(9);
      expect(j.promptIds.length + j.maxTokens).toBeLessThanOrEqual(9);
    }
    expect(jobs.length).toBeGreaterThan(0);
  });
});

describe('generateSelfContinuations', () => {
  it("stores each opening followed by the model's own continuation, in job order, without the end-of-story id", async () => {
    const jobs = selfContinuationJobs(STORIES.slice(0, 2), model.tokenizer, model.runner.config.contextLength, { openings: 2, sampledTemperatures: [0.7], maxTokens: 40 });
    const docs: number[][] = [];
    const got = await generateSelfContinuations(model.runner, jobs, (d) => docs.push(d), { batchSize: 3 });
    expect(got.documents).toBe(jobs.length);
    expect(got.tokens).toBe(docs.reduce((s, d) => s + d.length, 0));
    // One request at a time, the same requests give the same tokens (batching and seeds do not change them).
    for (let i = 0; i < jobs.length; i++) {
      const [alone] = await generate(model.runner, [jobs[i]]);
      const out = alone.outputIds[alone.outputIds.length - 1] === 1 ? alone.outputIds.slice(0, -1) : alone.outputIds;
      expect(docs[i]).toEqual([...jobs[i].promptIds, ...out]);
      expect(docs[i].slice(1)).not.toContain(1);
    }
  });

  it('a datastore built with them drafts the greedy continuation of an opening it holds', async () => {
    const corpus = path.join(model.dir, 'corpus.jsonl');
    await writeFile(corpus, STORIES.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const plain = await buildChunksFromJsonl({ input: corpus, tokenizer: model.tokenizer });
    const built = await buildChunksFromJsonl({
      input: corpus,
      tokenizer: model.tokenizer,
      selfContinuations: { runner: model.runner, options: { openings: 1, sampledTemperatures: [], maxTokens: 30 } },
    });
    expect(built.selfDocuments).toBe(2);
    expect(built.documents).toBe(3 + 2);
    expect(built.tokens).toBe(plain.tokens + built.selfTokens);

    const opening = model.tokenizer.encode('Lily saw a cat.', { bos: true });
    const [greedy] = await generate(model.runner, [{ promptIds: opening, maxTokens: 8 }]);
    const store = Datastore.fromChunks(built.chunks, { separatorId: model.tokenizer.bosId });
    const drafts = (st: Datastore): number[][] => {
      const m = st.lookup(opening);
      return Array.from({ length: m.count }, (_, i) => Array.from(m.tokens.subarray(i * m.width, i * m.width + 4)));
    };
    // The corpus alone continues the opening with its own story; with the continuations, one match is the model's.
    expect(drafts(Datastore.fromChunks(plain.chunks, { separatorId: model.tokenizer.bosId }))).not.toContainEqual(greedy.outputIds.slice(0, 4));
    expect(drafts(store)).toContainEqual(greedy.outputIds.slice(0, 4));
  });

  it("also yields the model's next-token table: at every generated position, the distribution its token was drawn from", async () => {
    const corpus = path.join(model.dir, 'table-corpus.jsonl');
    await writeFile(corpus, STORIES.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const built = await buildChunksFromJsonl({
      input: corpus,
      tokenizer: model.tokenizer,
      selfContinuations: { runner: model.runner, options: { openings: 1, sampledTemperatures: [], maxTokens: 30 } },
    });
    const table = built.nextTokens!;
    expect(table.size).toBeGreaterThan(0);
    // Greedy continuations: each token is the argmax there, so along a continuation every
    // 2-token context seen once has that token as its best candidate.
    const opening = model.tokenizer.encode('Lily saw a cat.', { bos: true });
    const [greedy] = await generate(model.runner, [{ promptIds: opening, maxTokens: 30 }]);
    const seq = [...opening, ...greedy.outputIds];
    const seen = new Map<string, number>();
    for (let t = opening.length; t < seq.length; t++) {
      const key = `${seq[t - 2]},${seq[t - 1]}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    let checked = 0;
    for (let t = opening.length; t < seq.length; t++) {
      if (seen.get(`${seq[t - 2]},${seq[t - 1]}`) !== 1) continue;
      const e = table.lookup(seq, t);
      expect(e).toBeGreaterThanOrEqual(0);
      expect(table.tokenAt(e, 0)).toBe(seq[t]);
      checked++;
    }
    expect(checked).toBeGreaterThan(5);
    expect(await buildChunksFromJsonl({ input: corpus, tokenizer: model.tokenizer }).then((r) => r.nextTokens)).toBeNull();
  });
});

describe('sssd datastore build --model', () => {
  const run = promisify(execFile);
  /** `sssd ARGS`: as compiled once (compiled-cli.ts) for six of the seven starts; bin/sssd.mjs itself for the build with the model (sourceCli). */
  const cli = (...args: string[]) => runCli(sssdNodeArgs(), args);
  const sourceCli = (...args: string[]) => runCli([path.join(repoRoot, 'bin/sssd.mjs')], args);
  const runCli = async (entry: string[], args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [...entry, ...args], { cwd: repoRoot });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('reports the continuations it stored, and refuses --self-* flags without a model', async () => {
    const corpus = path.join(model.dir, 'cli-corpus.jsonl');
    await writeFile(corpus, STORIES.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const tok = models.stories260K.tokenizer;
    const out = path.join(model.dir, 'self.sssd-ds');
    const unread = path.join(model.dir, 'unread.sssd-ds');
    const [built, stray, badTemp, strayRead, builtUnread] = await Promise.all([
      sourceCli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', out, '--model', models.stories260K.checkpoint, '--self-openings', '2', '--self-max-tokens', '20'),
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', path.join(model.dir, 'x.sssd-ds'), '--self-openings', '2'),
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', path.join(model.dir, 'y.sssd-ds'), '--model', models.stories260K.checkpoint, '--self-temperatures', '0.7,hot'),
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', path.join(model.dir, 'z.sssd-ds'), '--no-self-read-corpus'),
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', unread, '--model', models.stories260K.checkpoint, '--self-openings', '2', '--self-max-tokens', '20', '--no-self-read-corpus'),
    ]);
    expect(built.code).toBe(0);
    // Story 0: 2 greedy + 2 sampled (default 0.7 and 1); story 1: the same; story 2 has no opening.
    expect(built.stdout).toMatch(/from 11 documents/);
    expect(built.stdout).toMatch(/the model's own continuations: 8 documents, \d+ tokens/);
    expect(built.stdout).toMatch(/self\.sssd-ds\.next-tokens: the model's next-token distributions for \d+ contexts/);
    expect((await readNextTokenTable(`${out}.next-tokens`, { vocabSize: 512 })).size).toBeGreaterThan(0);
    type Info = { nextTokens: { contexts: number; candidates: number; corpusPositions: number | null } | null };
    const info = JSON.parse((await cli('datastore', 'info', out, '--json')).stdout) as Info;
    expect(info.nextTokens?.contexts).toBe((await readNextTokenTable(`${out}.next-tokens`)).size);
    // The table also read every position of the two stories with sentences and the one without.
    expect(built.stdout).toMatch(/read \d+\.\d+ s/);
    const storyPositions = STORIES.reduce((sum, text) => sum + model.tokenizer.encode(text, { bos: true }).length - 1, 0);
    expect(info.nextTokens?.corpusPositions).toBe(storyPositions);
    expect(builtUnread.code).toBe(0);
    const unreadInfo = JSON.parse((await cli('datastore', 'info', unread, '--json')).stdout) as Info;
    expect(unreadInfo.nextTokens?.corpusPositions).toBe(0);
    expect(unreadInfo.nextTokens!.contexts).toBeLessThan(info.nextTokens!.contexts);
    expect(strayRead.code).not.toBe(0);
    expect(strayRead.stderr).toMatch(/--no-self-read-corpus needs --model PATH/);
    expect(stray.code).not.toBe(0);
    expect(stray.stderr).toMatch(/--self-openings needs --model PATH/);
    expect(badTemp.code).not.toBe(0);
    expect(badTemp.stderr).toMatch(/--self-temperatures must be a number/);
    expect(`${stray.stderr}${badTemp.stderr}`).not.toMatch(/at .*\.ts:\d+/);
  });
});
