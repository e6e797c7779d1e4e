import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTokenizerWithHash } from '../../../gpu-pool/cli/generate-command';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { nextTokenTablePath, writeNextTokenTable } from '../../../gpu-pool/datastore/next-token-table-file';
import { NextTokenTableBuilder } from '../../../shared/drafting/next-token-table';
import { models, repoRoot, requireSharedData } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';

const run = promisify(execFile);
/** bin/sssd.mjs itself, for the JSON report; the file's other five starts run it as compiled once (compiled-cli.ts). */
const sourceSssd = [path.join(repoRoot, 'bin/sssd.mjs')];

describe('sssd bench-drafting', () => {
  let dir = '';
  beforeAll(async () => {
    requireSharedData();
    dir = await mkdtemp(path.join(os.tmpdir(), 'sssd-bench-drafting-'));
    const prompts = ['Tim went to the park.', 'Sue had a red ball.', 'One day, a cat sat.'];
    await writeFile(path.join(dir, 'w.jsonl'), prompts.map((p, i) => JSON.stringify({ user: `u${i}`, prompt: p, max_tokens: 8, temperature: 0 })).join('\n') + '\n');
    const stories = ['Once upon a time, there was a little dog. The dog liked to run in the park.', 'Lily had a big red ball. She liked to play with it every day.'];
    await writeFile(path.join(dir, 'c.jsonl'), stories.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names a corpus line that is not JSON, a corpus given as a folder, and a datastore of another tokenizer, in one line each', async () => {
    await writeFile(path.join(dir, 'bad.jsonl'), '{"text": "fine"}\n{bad\n');
    const fails = async (corpus: string, extra: string[] = []): Promise<{ code: number; stderr: string }> =>
      run(process.execPath, [...sssdNodeArgs(), 'bench-drafting', '--tokenizer', models.stories260K.tokenizer, '--workload', path.join(dir, 'w.jsonl'), '--corpus', corpus, '--rounds', '1', ...extra]).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => err,
      );
    const bad = await fails(path.join(dir, 'bad.jsonl'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.jsonl:2: not JSON \(.*\); each line is \{"text": \.\.\.\}/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    const folder = await fails(dir);
    expect(folder.stderr).toMatch(/corpus .* is a folder; name a file/);
    // Its lookups match nothing the tokenizer's prompts ask: refused as the pool refuses it (its steps were timed, exit 0).
    const { tokenizer } = await readTokenizerWithHash(models.stories260K.tokenizer);
    const other = path.join(dir, 'other-tokenizer.sssd-ds');
    await Datastore.fromDocuments([tokenizer.encode('Tim went to the park.', { bos: true })], { vocabSize: tokenizer.vocabSize, tokenizerSha256: 'ab'.repeat(32) }).save(other);
    const wrong = await fails(path.join(dir, 'c.jsonl'), ['--datastore', other]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/^sssd: cannot load datastore .*other-tokenizer\.sssd-ds: .* was built with a different tokenizer \(sha256 abababababab…, expected [0-9a-f]{12}…\)\n$/);
  });

  it('reports construction, merge and (with a datastore) step costs as JSON', async () => {
    const { stdout } = await run(
      process.execPath,
      [...sourceSssd, 'bench-drafting', '--tokenizer', models.stories260K.tokenizer, '--workload', path.join(dir, 'w.jsonl'), '--corpus', path.join(dir, 'c.jsonl'), '--rounds', '1', '--long-prompt', '2000', '--json'],
      { cwd: repoRoot },
    );
    const out = JSON.parse(stdout) as Record<string, { median: number; n: number } | number>;
    for (const k of ['constructContextMicros', 'constructSssdMicros', 'constructLongPromptMillis', 'constructLongPromptReusedMillis', 'merge64KiBMillis', 'merge256KiBMillis']) {
      const s = out[k] as { median: number; n: number };
      expect(s.n).toBeGreaterThan(0);
      expect(Number.isFinite(s.median)).toBe(true);
    }
    expect(out.merge64KiBBytes).toBeLessThanOrEqual(64 * 1024);
    expect(out.stepDatastoreN32Micros).toBeUndefined();
  });

  it("with a datastore and its next-token table, also times the datastore step and a sampled request's table steps", async () => {
    const { tokenizer, sha256 } = await readTokenizerWithHash(models.stories260K.tokenizer);
    const stories = ['Once upon a time, there was a little dog. The dog liked to run in the park.', 'Lily had a big red ball. She liked to play with it every day.'];
    const docs = stories.map((t) => tokenizer.encode(t, { bos: true }));
    const store = path.join(dir, 'd.sssd-ds');
    await Datastore.fromDocuments(docs, { vocabSize: tokenizer.vocabSize, tokenizerSha256: sha256 }).save(store);
    // A table over the stories' contexts: each position's next token, likeliest.
    const builder = new NextTokenTableBuilder(tokenizer.vocabSize);
    const logits = new Float32Array(tokenizer.vocabSize);
    for (const d of docs) {
      for (let end = 2; end < d.length; end++) {
        logits.fill(0);
        logits[d[end]] = 5;
        builder.add(d, end, logits);
      }
    }
    await writeNextTokenTable(nextTokenTablePath(store), builder.build(), { vocabSize: tokenizer.vocabSize, tokenizerSha256: sha256, modelSha256: 'cd'.repeat(32) });
    const args = [...sssdNodeArgs(), 'bench-drafting', '--tokenizer', models.stories260K.tokenizer, '--workload', path.join(dir, 'w.jsonl'), '--corpus', path.join(dir, 'c.jsonl'), '--rounds', '1', '--long-prompt', '2000', '--datastore', store, '--json'];
    const withTable = JSON.parse((await run(process.execPath, args, { cwd: repoRoot })).stdout) as Record<string, { median: number; n: number } | undefined>;
    for (const k of ['stepDatastoreN32Micros', 'stepTableN12Micros', 'stepTableN32Micros']) {
      expect(withTable[k]?.n).toBeGreaterThan(0);
      expect(Number.isFinite(withTable[k]?.median)).toBe(true);
    }
    const without = JSON.parse((await run(process.execPath, [...args, '--next-tokens', 'none'], { cwd: repoRoot })).stdout) as Record<string, unknown>;
    expect(without.stepDatastoreN32Micros).toBeDefined();
    expect(without.stepTableN12Micros).toBeUndefined();
  });
});
