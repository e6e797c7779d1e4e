import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { writeHfCheckpoint } from '../../../gpu-pool/model/hf-checkpoint';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { parseLlama2cTokenizer } from '../../../shared/tokenizer/llama2c-tokenizer';
import { llama2cToTokenizerJson } from '../../../shared/tokenizer/tokenizer-json';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { models, repoRoot, requireSharedData, workloads } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';

const run = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `sssd ARGS`; SSSD_TOKENIZER only where cliWithTokenizerEnv sets it. Some forty starts: compiled once
 * (compiled-cli.ts); the real corpus's build runs bin/sssd.mjs itself (sourceCli).
 */
async function cli(...args: string[]): Promise<CliResult> {
  return cliWithTokenizerEnv(undefined, ...args);
}

async function sourceCli(...args: string[]): Promise<CliResult> {
  return runCli([path.join(repoRoot, 'bin/sssd.mjs'), ...args], undefined);
}

async function cliWithTokenizerEnv(tokenizer: string | undefined, ...args: string[]): Promise<CliResult> {
  return runCli([...sssdNodeArgs(), ...args], tokenizer);
}

async function runCli(nodeArgs: string[], tokenizer: string | undefined): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, nodeArgs, { cwd: repoRoot, env: { ...process.env, SSSD_TOKENIZER: tokenizer } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dir = '';
beforeAll(async () => {
  requireSharedData();
  dir = await mkdtemp(path.join(tmpdir(), 'sssd-ds-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sssd datastore', () => {
  it('builds the real corpus with tok512, and the file answers lookups with story continuations', async () => {
    const out = path.join(dir, 'corpus.sssd-ds');
    const built = await sourceCli('datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--input', workloads.datastoreCorpus, '--out', out);
    expect(built.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/tokens from 1500 documents in 1 chunk\(s\)/);

    const info = await cli('datastore', 'info', out, '--json');
    expect(info.code).toBe(0);
    const parsed = JSON.parse(info.stdout) as { tokens: number; documents: number; vocabSize: number; chunks: number[]; nextTokens: unknown };
    expect(parsed.nextTokens).toBeNull(); // built without --model: no table
    expect(parsed.documents).toBe(1500);
    expect(parsed.vocabSize).toBe(512);
    expect(parsed.tokens).toBeGreaterThan(300_000);

    const tokenizer = loadTokenizer(new Uint8Array(await readFile(models.stories260K.tokenizer)));
    const store = await Datastore.load(out, { expectVocabSize: tokenizer.vocabSize });
    // The first story, tokenized as the model sees it, opens the store.
    const firstLine = (await readFile(workloads.datastoreCorpus, 'utf8')).split('\n')[0];
    const firstIds = tokenizer.encode((JSON.parse(firstLine) as { text: string }).text);
    expect(Array.from(store.indexedChunks[0].tokens.subarray(0, firstIds.length))).toEqual(firstIds);

    const context = tokenizer.encode('Once upon a time, there was a little');
    const m = store.lookup(context);
    expect(m.count).toBeGreaterThanOrEqual(50);
    expect(m.matchLengths[0]).toBe(Math.min(12, context.length));
    const texts = Array.from({ length: m.count }, (_, i) => tokenizer.decode(m.tokens.subarray(i * m.width, i * m.width + 4).filter((t) => t > 1)));
    expect(texts.filter((t) => /\b(girl|boy|dog|cat|bird) named\b/.test(t)).length).toBeGreaterThan(m.count / 2);
    await store.close();

    // `datastore bench` times lookups on the file, back to back or with the caches made cold first.
    const [warm, cold, bad] = await Promise.all([
      cli('datastore', 'bench', out, '--lookups', '300'),
      cli('datastore', 'bench', out, '--lookups', '300', '--cold-mb', '2'),
      cli('datastore', 'bench', out, '--cold-mb', 'lots'),
    ]);
    for (const r of [warm, cold]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/over 300 contexts from the store itself.*:\n\s+median [\d.]+ µs, p90 [\d.]+ µs/);
      expect(r.stdout).toMatch(/\d+\.\d matches per lookup/);
    }
    expect(warm.stdout).not.toContain('caches cold');
    expect(cold.stdout).toContain('caches cold (2 MB read at random before each)');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--cold-mb');
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it("builds a datastore with no corpus at all from the model's own stories (--self-samples), the same file twice", async () => {
    const args = (out: string) => ['datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--model', models.stories260K.checkpoint, '--self-samples', '24', '--self-openings', '1', '--self-temperatures', '0', '--self-max-tokens', '24', '--threads', '1', '--out', out];
    const [one, two] = [path.join(dir, 'samples-1.sssd-ds'), path.join(dir, 'samples-2.sssd-ds')];
    const built = await cli(...args(one));
    expect(built.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(built.code).toBe(0);
    // 24 stories, and one greedy continuation of each one's first sentence.
    expect(built.stdout).toMatch(/tokens from 48 documents .*\(sample [\d.]+ s, /);
    expect(built.stdout).toMatch(/of which the model's own continuations: 24 documents/);
    expect(built.stdout).toMatch(/the model's own stories: 24 of 24 sampled\n/);
    expect((await cli(...args(two))).code).toBe(0);
    // Seeded: reproducible, byte for byte.
    expect((await readFile(one)).equals(await readFile(two))).toBe(true);
    const tokenizer = loadTokenizer(new Uint8Array(await readFile(models.stories260K.tokenizer)));
    const store = await Datastore.load(one, { expectVocabSize: tokenizer.vocabSize });
    // The model's own stories open as its stories do.
    expect(store.lookup(tokenizer.encode('Once upon a time')).count).toBeGreaterThan(5);
    await store.close();
    const [noModel, both] = await Promise.all([
      cli('datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--self-samples', '4', '--out', path.join(dir, 'n.sssd-ds')),
      cli('datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--model', models.stories260K.checkpoint, '--self-samples', '4', '--input', workloads.datastoreCorpus, '--out', path.join(dir, 'b.sssd-ds')),
    ]);
    expect(noModel.stderr).toMatch(/--self-samples needs --model PATH/);
    // An --out under a file: said before the build, not after it with a stack trace.
    const underFile = await cli('datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--input', workloads.datastoreCorpus, '--out', path.join(one, 'x.sssd-ds'));
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(/cannot write in .*samples-1\.sssd-ds \(ENOTDIR\)/);
    expect(underFile.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(both.stderr).toMatch(/--input corpus\.jsonl or --self-samples N .*not both/);
  });

  it("takes a Hugging Face --model folder's own tokenizer.json when --tokenizer is left out, as pool and generate do", async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const hf = path.join(dir, 'hf');
    await writeHfCheckpoint(hf, bin.config, bin.weights);
    const vocab = parseLlama2cTokenizer(new Uint8Array(await readFile(models.stories260K.tokenizer)));
    await writeFile(path.join(hf, 'tokenizer.json'), JSON.stringify(llama2cToTokenizerJson(vocab)));
    const out = path.join(dir, 'hf.sssd-ds');
    const built = await cli('datastore', 'build', '--model', hf, '--self-samples', '4', '--self-openings', '1', '--self-temperatures', '0', '--self-max-tokens', '16', '--threads', '1', '--out', out);
    expect(built.stderr).not.toMatch(/needs --tokenizer/);
    expect(built.code).toBe(0);
    const store = await Datastore.load(out, { expectVocabSize: 512 });
    expect(store.tokenCount).toBeGreaterThan(0);
    await store.close();
  });

  it("says a small corpus's progress in bytes and tokens, not as 0/0 MB (review h141)", async () => {
    const corpus = path.join(dir, 'small.jsonl');
    const text = '{"text": "Once upon a time, there was a little dog. He liked to run."}\n{"text": "Tom ran to the park. He saw a big tree."}\n';
    await writeFile(corpus, text);
    const built = await cli('datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--input', corpus, '--out', path.join(dir, 'small.sssd-ds'));
    expect(built.code).toBe(0);
    expect(built.stderr).toContain(`tokenizing (bytes): ${text.length}/${text.length}\n`);
    expect(built.stderr).toMatch(/^indexing \(tokens\): [1-9]\d*\/[1-9]\d*$/m);
  });

  it('takes the tokenizer beside a llama2.c --model when --tokenizer is left out, as up does (review h141)', async () => {
    const out = path.join(dir, 'beside.sssd-ds');
    const built = await cli('datastore', 'build', '--model', models.stories260K.checkpoint, '--input', workloads.datastoreCorpus, '--self-documents', '1', '--self-openings', '1', '--self-temperatures', '0', '--self-max-tokens', '8', '--threads', '1', '--out', out);
    expect(built.stderr).not.toMatch(/needs --tokenizer/);
    expect(built.code).toBe(0);
    // Built with tok512.bin: stories260K's vocabulary.
    expect((JSON.parse((await cli('datastore', 'info', out, '--json')).stdout) as { vocabSize: number }).vocabSize).toBe(512);
    // A checkpoint with none beside it: said, with what to pass.
    const none = await cli('datastore', 'build', '--model', models.llama2xs.checkpoint, '--input', workloads.datastoreCorpus, '--out', path.join(dir, 'none.sssd-ds'));
    expect([none.code, none.stderr]).toEqual([2, expect.stringMatching(/No tokenizer found beside --model .*llama2xs\.bin .*set --tokenizer \(or SSSD_TOKENIZER\)/)]);
  });

  it('takes SSSD_TOKENIZER where --tokenizer is not given, with --model or without, as up does (review h185)', async () => {
    const corpus = path.join(dir, 'env-corpus.jsonl');
    await writeFile(corpus, '{"text": "Once upon a time, there was a little dog."}\n');
    const [withModel, corpusOnly, flagFirst] = await Promise.all([
      // llama2xs has no tokenizer beside it: the README's example of a model that needs one named.
      cliWithTokenizerEnv(models.llama2xs.tokenizer, 'datastore', 'build', '--model', models.llama2xs.checkpoint, '--input', corpus, '--self-openings', '1', '--self-temperatures', '0', '--self-max-tokens', '4', '--threads', '1', '--out', path.join(dir, 'env-model.sssd-ds')),
      cliWithTokenizerEnv(models.babyllama105.tokenizer, 'datastore', 'build', '--input', corpus, '--out', path.join(dir, 'env-corpus.sssd-ds')),
      cliWithTokenizerEnv(models.babyllama105.tokenizer, 'datastore', 'build', '--tokenizer', models.stories260K.tokenizer, '--input', corpus, '--out', path.join(dir, 'env-flag.sssd-ds')),
    ]);
    for (const built of [withModel, corpusOnly, flagFirst]) expect([built.code, built.stderr]).toEqual([0, expect.any(String)]);
    const vocabOf = async (file: string): Promise<number> => (JSON.parse((await cli('datastore', 'info', path.join(dir, file), '--json')).stdout) as { vocabSize: number }).vocabSize;
    // Held to the tokenizer each was built with: tok512.bin's 512, tok105.bin's 105, and --tokenizer's over the variable's.
    expect([await vocabOf('env-model.sssd-ds'), await vocabOf('env-corpus.sssd-ds'), await vocabOf('env-flag.sssd-ds')]).toEqual([512, 105, 512]);
  });

  it('names the line of a bad corpus record and exits non-zero without a stack trace', async () => {
    const badJson = path.join(dir, 'bad.jsonl');
    await writeFile(badJson, '{"text": "Once upon a time."}\n\n{"text": "Tom ran."\n');
    const noField = path.join(dir, 'nofield.jsonl');
    await writeFile(noField, '{"text": "Once upon a time."}\n{"body": "Tom ran."}\n');
    const tok = models.stories260K.tokenizer;
    const [a, b, c, d] = await Promise.all([
      cli('datastore', 'build', '--tokenizer', tok, '--input', badJson, '--out', path.join(dir, 'x.sssd-ds')),
      cli('datastore', 'build', '--tokenizer', tok, '--input', noField, '--out', path.join(dir, 'y.sssd-ds')),
      cli('datastore', 'build', '--input', noField),
      cli('datastore', 'info', badJson),
    ]);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toContain(`${badJson}:3: not valid JSON`);
    expect(b.code).not.toBe(0);
    expect(b.stderr).toContain(`${noField}:2: expected an object with a string "text" field`);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toContain('needs --tokenizer PATH (or SSSD_TOKENIZER) --out FILE, and --input corpus.jsonl (or, with --model, --self-samples N)');
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/not a usable SSSD datastore: wrong magic/);
    // A folder where a file goes: named, exit 2, no stack (EISDIR came out raw, one only after the whole build).
    const empty = path.join(dir, 'empty.jsonl');
    await writeFile(empty, '');
    const [e, f, g, h] = await Promise.all([
      cli('datastore', 'info', dir),
      cli('datastore', 'build', '--tokenizer', tok, '--input', dir, '--out', path.join(dir, 'z.sssd-ds')),
      cli('datastore', 'build', '--tokenizer', tok, '--input', noField, '--out', dir),
      // No documents: refused, nothing written (it wrote a datastore of 0 tokens).
      cli('datastore', 'build', '--tokenizer', tok, '--input', empty, '--out', path.join(dir, 'empty.sssd-ds')),
    ]);
    expect(h.stderr).toMatch(/holds no documents .*nothing written/);
    expect(e.stderr).toMatch(/cannot read datastore file .*: it is a folder/);
    expect(f.stderr).toMatch(/corpus .* is a folder; name a JSONL file/);
    expect(g.stderr).toMatch(/--out .* is a folder; name the file to write/);
    for (const r of [a, b, c, d, e, f, g]) expect(r.stderr).not.toMatch(/\n\s+at /);
    for (const r of [e, f, g, h]) expect(r.code).toBe(2);
    // Its own inputs as --out: the build replaced them (the corpus was lost). Checked before any work, the input whole.
    const corpus = path.join(dir, 'corpus.jsonl');
    await writeFile(corpus, '{"text": "Once upon a time."}\n');
    const [overInput, overTokenizer] = await Promise.all([
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', path.join(dir, '.', 'corpus.jsonl')),
      cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', tok),
    ]);
    expect(overInput.stderr).toMatch(/--out .*corpus\.jsonl is the --input file: the build would replace it/);
    expect(overTokenizer.stderr).toMatch(/--out .*tok512\.bin is the --tokenizer file/);
    for (const r of [overInput, overTokenizer]) expect(r.code).toBe(2);
    expect(await readFile(corpus, 'utf8')).toBe('{"text": "Once upon a time."}\n');
    // bench's contexts: a file with none, and a folder, are said as such (a TypeError, and "not found", before).
    const built = path.join(dir, 'small.sssd-ds');
    expect((await cli('datastore', 'build', '--tokenizer', tok, '--input', corpus, '--out', built)).code).toBe(0);
    // A next-token table beside it that cannot be read: info says what it could read, and exits 2, as the pool refuses
    // the datastore (it exited 0, review h166).
    const damaged = path.join(dir, 'damaged-table.sssd-ds');
    await writeFile(damaged, await readFile(built));
    await writeFile(`${damaged}.next-tokens`, 'not a table at all');
    const [noContexts, folderContexts, otherTokenizer, damagedInfo] = await Promise.all([
      cli('datastore', 'bench', built, '--tokenizer', tok, '--contexts-from', empty),
      cli('datastore', 'bench', built, '--tokenizer', tok, '--contexts-from', dir),
      // Contexts of another tokenizer looked up in tok512's store: refused as the pool refuses it (1.5 matches a lookup, exit 0).
      cli('datastore', 'bench', built, '--tokenizer', models.babyllama105.tokenizer, '--contexts-from', corpus, '--field', 'text'),
      cli('datastore', 'info', damaged),
    ]);
    expect(noContexts.stderr).toMatch(/empty\.jsonl holds no text to look up/);
    expect(folderContexts.stderr).toMatch(/--contexts-from .* is a folder; name a file/);
    expect(otherTokenizer.stderr).toMatch(/^sssd: cannot load datastore .*small\.sssd-ds: .* was built for a vocabulary of 512 tokens, but tokenizer .*tok105\.bin has 105\n$/);
    expect(otherTokenizer.stdout).toBe('');
    expect(damagedInfo.stdout).toMatch(/^ {2}tokens {5}\d+ /m);
    expect(damagedInfo.stdout).toMatch(/next-token table .*damaged-table\.sssd-ds\.next-tokens: unreadable \(.* is not a next-token table\)/);
    expect(damagedInfo.stderr).toMatch(/^sssd: the next-token table .*damaged-table\.sssd-ds\.next-tokens is unreadable, and a pool given this datastore refuses to start with it/);
    for (const r of [noContexts, folderContexts, otherTokenizer, damagedInfo]) {
      expect(r.code).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    // The threads setting every command reads, checked before any runs.
    const threads = await run(process.execPath, [...sssdNodeArgs(), 'datastore', 'info', badJson], { cwd: repoRoot, env: { ...process.env, SSSD_THREADS: '-1' } }).then(
      (): CliResult => ({ code: 0, stdout: '', stderr: '' }),
      (err: CliResult) => err,
    );
    expect(threads.code).toBe(2);
    expect(threads.stderr).toMatch(/SSSD_THREADS must be an integer from 1 to 256/);
  });
});
