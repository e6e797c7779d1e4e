import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTokenizerWithHash } from '../../../gpu-pool/cli/generate-command';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { nextTokenTablePath } from '../../../gpu-pool/datastore/next-token-table-file';
import { models, repoRoot, requireSharedData } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';

const run = promisify(execFile);
/** bin/sssd.mjs itself, for the first replay; the other starts run it as compiled once (compiled-cli.ts). */
const sourceSssd = [path.join(repoRoot, 'bin/sssd.mjs')];

describe('sssd eval-drafts', () => {
  let dir = '';
  let workload = '';
  beforeAll(async () => {
    requireSharedData();
    dir = await mkdtemp(path.join(os.tmpdir(), 'sssd-eval-'));
    workload = path.join(dir, 'w.jsonl');
    const lines = [
      { user: 'a', prompt: 'Tim went to the park.', max_tokens: 12, temperature: 0, arrival_s: 0 },
      { user: 'b', prompt: 'Sue had a red ball.', max_tokens: 12, temperature: 0, arrival_s: 0.1 },
      { user: 'a', prompt: 'Tim went to the park.', max_tokens: 12, temperature: 0, arrival_s: 0.2 },
    ];
    await writeFile(workload, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const args = (extra: string[], sssd: string[] = sssdNodeArgs()): string[] => [
    ...sssd, 'eval-drafts', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer,
    '--workload', workload, '--cache-dir', path.join(dir, 'cache'), ...extra,
  ];

  it('replays a workload with the real model, caches the continuations, and reports τ per method and budget', async () => {
    const { stdout } = await run(process.execPath, args(['--methods', 'none,pld,context+user', '--budgets', '4,8', '--json'], sourceSssd), { cwd: repoRoot });
    const out = JSON.parse(stdout) as { requests: number; continuationTokens: number; results: Array<{ method: string; budget: number; tau: number; steps: number }> };
    expect(out.requests).toBe(3);
    expect(out.continuationTokens).toBeGreaterThan(3);
    expect(out.results.map((r) => `${r.method}@${r.budget}`)).toEqual(['none@4', 'none@8', 'pld@4', 'pld@8', 'context+user@4', 'context+user@8']);
    const none = out.results[0];
    expect(none.tau).toBe(1);
    expect(none.steps).toBe(out.continuationTokens);
    // User a repeats a prompt: their cache predicts the whole greedy continuation of the
    // third request (12 tokens), so it takes ceil(12 / (budget + 1)) steps instead of 12.
    expect(out.results[4].steps).toBeLessThanOrEqual(none.steps - 12 + 3);
    expect(out.results[5].steps).toBeLessThanOrEqual(none.steps - 12 + 2);
    expect((await readdir(path.join(dir, 'cache'))).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    // Second run: continuations come from the cache, same figures; the table prints.
    const again = await run(process.execPath, args(['--methods', 'none', '--budgets', '4']), { cwd: repoRoot });
    expect(again.stdout).toMatch(/none\s+1\.00/);
    expect(again.stderr).toMatch(/greedy continuations from/);
  });

  it('with --sampling as-served, replays sampled requests against their seeded samples, drafts coupled to their noise', async () => {
    const sampledWorkload = path.join(dir, 'sampled.jsonl');
    const lines = [
      { user: 'c', prompt: 'Ben saw a big dog.', max_tokens: 12, temperature: 1, seed: 7, arrival_s: 0 },
      { user: 'd', prompt: 'Tim went to the park.', max_tokens: 12, temperature: 0, arrival_s: 0.1 },
      { user: 'c', prompt: 'Ben saw a big dog.', max_tokens: 12, temperature: 1, seed: 7, arrival_s: 0.2 },
    ];
    await writeFile(sampledWorkload, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const cacheDir = path.join(dir, 'cache-sampled');
    const common = [...sssdNodeArgs(), 'eval-drafts', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--workload', sampledWorkload, '--cache-dir', cacheDir];
    const { stdout } = await run(process.execPath, [...common, '--methods', 'none,context+user', '--budgets', '8', '--sampling', 'as-served', '--json'], { cwd: repoRoot });
    type Result = { method: string; steps: number; emitted: number; sampledSteps: number; sampledEmitted: number; sampledTau: number };
    const out = JSON.parse(stdout) as { sampling: string; results: Result[] };
    expect(out.sampling).toBe('as-served');
    const [none, user] = out.results;
    // Two of the three requests are sampled; without drafts each of their tokens is a step.
    expect(none.sampledSteps).toBe(none.sampledEmitted);
    expect(none.sampledEmitted).toBeGreaterThan(2);
    expect(none.sampledEmitted).toBeLessThan(none.emitted);
    // The seed fixes the sample, so the repeat is the first request's very text: the
    // user's cache drafts it, and the coupled drafter follows the noise to it.
    const repeat = none.sampledEmitted / 2;
    expect(user.sampledSteps).toBeLessThanOrEqual(repeat + Math.ceil(repeat / 9));
    expect(user.sampledTau).toBeGreaterThan(1.5);

    // The sampled continuation is the one `sssd generate` gives for that seed (the pool's, whatever the method).
    const gen = await run(process.execPath, [...sssdNodeArgs(), 'generate', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer, '--prompt', 'Ben saw a big dog.', '--max-tokens', '12', '--temperature', '1', '--seed', '7', '--json'], { cwd: repoRoot });
    const generated = JSON.parse(gen.stdout) as { output_ids: number[] };
    const files = (await readdir(cacheDir)).filter((f) => f.endsWith('.json'));
    expect(files).toHaveLength(1);
    const cached = JSON.parse(await readFile(path.join(cacheDir, files[0]), 'utf8')) as { continuations: number[][] };
    expect(cached.continuations[0]).toEqual(generated.output_ids);
    expect(cached.continuations[2]).toEqual(generated.output_ids);

    // Greedy mode keeps its own cache file and the table says which continuations it read.
    const greedy = await run(process.execPath, [...common, '--methods', 'none', '--budgets', '4'], { cwd: repoRoot });
    expect(greedy.stdout).not.toMatch(/sampled requests only/);
    expect((await readdir(cacheDir)).filter((f) => f.endsWith('.json'))).toHaveLength(2);
    const table = await run(process.execPath, [...common, '--methods', 'none', '--budgets', '4', '--sampling', 'as-served'], { cwd: repoRoot });
    expect(table.stderr).toMatch(/as-served continuations from/);
    expect(table.stdout).toMatch(/τ, sampled requests only/);
    const bad = await run(process.execPath, [...common, '--sampling', 'hot'], { cwd: repoRoot }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toMatch(/--sampling: unknown value "hot"/);
  });

  it('explains user mistakes without a stack trace', async () => {
    const bad = await run(process.execPath, args(['--methods', 'bogus']), { cwd: repoRoot }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toMatch(/^sssd: --methods: unknown value "bogus"/);
    const noDs = await run(process.execPath, args(['--methods', 'context+datastore']), { cwd: repoRoot }).catch((e: { stderr: string }) => e);
    expect((noDs as { stderr: string }).stderr).toMatch(/need --datastore FILE/);
    expect((noDs as { stderr: string }).stderr).not.toMatch(/at .*\.ts:\d+/);
    const noTable = await run(process.execPath, args(['--methods', 'table-chain']), { cwd: repoRoot }).catch((e: { code: number; stderr: string }) => e);
    expect((noTable as { code: number }).code).toBe(2);
    expect((noTable as { stderr: string }).stderr).toMatch(/table-chain needs the next-token table/);
    // A datastore path with a typo is named before the model runs, not after the continuations.
    const typo = await run(process.execPath, args(['--methods', 'context+datastore', '--datastore', '/nonexistent/d.sssd-ds']), { cwd: repoRoot }).catch((e: { code: number; stderr: string }) => e);
    expect((typo as { code: number }).code).toBe(2);
    expect((typo as { stderr: string }).stderr).toMatch(/^sssd: --datastore not found: \/nonexistent\/d\.sssd-ds/);

    // Bad files are refused before the model runs (review h166), each in a cache folder of its own that no
    // continuations reach: a datastore built with another tokenizer (figures printed for it, exit 0, where the pool
    // refuses it), a damaged next-token table, a broken corpus line; and a file given as --cache-dir (mkdir's stack).
    const { tokenizer, sha256 } = await readTokenizerWithHash(models.stories260K.tokenizer);
    const docs = ['Tim went to the park. He saw a dog.', 'Sue had a red ball.'].map((t) => tokenizer.encode(t, { bos: true }));
    const otherTokenizer = path.join(dir, 'other-tokenizer.sssd-ds');
    await Datastore.fromDocuments(docs, { vocabSize: tokenizer.vocabSize, tokenizerSha256: 'ab'.repeat(32) }).save(otherTokenizer);
    const damagedTable = path.join(dir, 'damaged-table.sssd-ds');
    await Datastore.fromDocuments(docs, { vocabSize: tokenizer.vocabSize, tokenizerSha256: sha256 }).save(damagedTable);
    await writeFile(nextTokenTablePath(damagedTable), 'not a table at all');
    const brokenCorpus = path.join(dir, 'broken-corpus.jsonl');
    await writeFile(brokenCorpus, '{"text": "Tim went to the park."}\n{"text": \n');
    const refused = (cacheDir: string, extra: string[]) =>
      // The later --cache-dir is the one taken.
      run(process.execPath, args([...extra, '--cache-dir', cacheDir]), { cwd: repoRoot }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
    const fresh = (name: string): string => path.join(dir, `never-${name}`);
    const [wrongTokenizer, table, corpus, cacheFile] = await Promise.all([
      refused(fresh('tokenizer'), ['--methods', 'context+datastore', '--datastore', otherTokenizer]),
      refused(fresh('table'), ['--methods', 'context+datastore', '--datastore', damagedTable]),
      refused(fresh('corpus'), ['--methods', 'context+datastore', '--datastore-corpus', brokenCorpus]),
      refused(workload, ['--methods', 'none']),
    ]);
    expect(wrongTokenizer.stderr).toMatch(/^sssd: cannot load datastore .*other-tokenizer\.sssd-ds: .* was built with a different tokenizer \(sha256 abababababab…, expected [0-9a-f]{12}…\)/);
    expect(table.stderr).toMatch(/^sssd: cannot load the next-token table: .*damaged-table\.sssd-ds\.next-tokens is not a next-token table/);
    expect(corpus.stderr).toMatch(/^sssd: .*broken-corpus\.jsonl:2: not JSON/);
    expect(cacheFile.stderr).toMatch(/^sssd: --cache-dir .*w\.jsonl: a file is in the way; name a folder/);
    for (const r of [wrongTokenizer, table, corpus, cacheFile]) {
      expect(r.code).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    for (const name of ['tokenizer', 'table', 'corpus']) expect(existsSync(fresh(name))).toBe(false);
  });
});
