// `sssd generate` as a user runs it: a child process; bad input gives a
// one-line message and a non-zero exit, never a stack trace.
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { models, repoRoot, requireSharedData } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { writeHfCheckpoint } from '../../../gpu-pool/model/hf-checkpoint';
import { parseLlama2cTokenizer } from '../../../shared/tokenizer/llama2c-tokenizer';
import { llama2cToTokenizerJson } from '../../../shared/tokenizer/tokenizer-json';

requireSharedData();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sssd-generate-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string }
/**
 * `sssd ARGS`, as this user or, where `as` names one, as that user (runuser: the test runs as root); SSSD_TOKENIZER only
 * where `tokenizerEnv` sets it. Some forty starts: compiled once (compiled-cli.ts), bin/sssd.mjs itself where `source`.
 */
function sssd(args: string[], opts: { cacheDir?: string; as?: string; tokenizerEnv?: string; source?: boolean } = {}): Promise<Run> {
  const cli = [...(opts.source ? [path.join(repoRoot, 'bin/sssd.mjs')] : sssdNodeArgs()), ...args];
  const [file, argv] = opts.as ? ['runuser', ['-u', opts.as, '--', process.execPath, ...cli]] : [process.execPath, cli];
  const env: NodeJS.ProcessEnv = { ...process.env, SSSD_CACHE_DIR: opts.cacheDir ?? path.join(tmp, 'cache') };
  delete env.SSSD_TOKENIZER;
  if (opts.tokenizerEnv !== undefined) env.SSSD_TOKENIZER = opts.tokenizerEnv;
  return new Promise((resolve) => {
    execFile(file, argv, { cwd: repoRoot, env }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const m = models.stories260K;

describe('sssd generate', () => {
  it('prints one JSON object whose ids reproduce the llama2.c fixture', async () => {
    const fixture = JSON.parse(readFileSync(m.fixtures, 'utf8').split('\n')[1]) as { prompt: string; prompt_ids: number[]; output_ids: number[] };
    const r = await sssd(['generate', '--model', m.checkpoint, '--tokenizer', m.tokenizer, '--prompt', fixture.prompt,
      '--max-tokens', String(fixture.output_ids.length), '--json'], { source: true });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[]; text: string; finish_reason: string };
    expect(out.prompt_ids).toEqual(fixture.prompt_ids);
    expect(out.output_ids).toEqual(fixture.output_ids);
    expect(out.finish_reason).toBe('length');
    expect(out.text.length).toBeGreaterThan(100);
  });

  it('runs a llama2.c .bin with the tokenizer beside it when --tokenizer is left out, as sssd up does (review h141)', async () => {
    const fixture = JSON.parse(readFileSync(m.fixtures, 'utf8').split('\n')[2]) as { prompt: string; prompt_ids: number[]; output_ids: number[] };
    const r = await sssd(['generate', '--model', m.checkpoint, '--prompt', fixture.prompt, '--max-tokens', String(fixture.output_ids.length), '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[] };
    expect(out.prompt_ids).toEqual(fixture.prompt_ids);
    expect(out.output_ids).toEqual(fixture.output_ids);
  });

  it('takes SSSD_TOKENIZER where --tokenizer is not given, before the one beside --model, as sssd up does (review h185)', async () => {
    // llama2xs has no tokenizer beside it: the README's example of a model that needs one named.
    const fixture = JSON.parse(readFileSync(models.llama2xs.fixtures, 'utf8').split('\n')[1]) as { prompt: string; prompt_ids: number[]; output_ids: number[] };
    const expected = fixture.output_ids.slice(0, 16);
    const generate = ['generate', '--model', models.llama2xs.checkpoint, '--prompt', fixture.prompt, '--max-tokens', String(expected.length), '--json'];
    const fromEnv = await sssd(generate, { tokenizerEnv: models.llama2xs.tokenizer });
    expect(fromEnv.stderr).toBe('');
    const out = JSON.parse(fromEnv.stdout) as { prompt_ids: number[]; output_ids: number[] };
    expect(out.prompt_ids).toEqual(fixture.prompt_ids);
    expect(out.output_ids).toEqual(expected);
    // --tokenizer still wins over it; it wins over the one beside --model (tok512.bin beside stories260K), and a path
    // that is no file is said as the variable's, not as a --tokenizer never passed.
    const [flagFirst, envFirst, missing, empty] = await Promise.all([
      sssd([...generate, '--tokenizer', models.llama2xs.tokenizer], { tokenizerEnv: models.babyllama105.tokenizer }),
      sssd(['generate', '--model', m.checkpoint, '--max-tokens', '2'], { tokenizerEnv: models.babyllama105.tokenizer }),
      sssd(['generate', '--model', m.checkpoint, '--max-tokens', '2'], { tokenizerEnv: path.join(tmp, 'nope.tok') }),
      // Empty is unset, as `up` reads it.
      sssd(['generate', '--model', m.checkpoint, '--max-tokens', '2', '--json'], { tokenizerEnv: '' }),
    ]);
    expect(JSON.parse(flagFirst.stdout)).toMatchObject({ output_ids: expected });
    expect([envFirst.code, envFirst.stderr.trim()]).toEqual([2, expect.stringMatching(/^sssd: tokenizer .*tok105\.bin has 105 tokens but model stories260K expects 512$/)]);
    expect([missing.code, missing.stderr.trim()]).toEqual([2, expect.stringMatching(/^sssd: SSSD_TOKENIZER points at .*nope\.tok, which does not exist; set it or --tokenizer/)]);
    expect([empty.code, empty.stderr]).toEqual([0, '']);
  });

  it('runs a Hugging Face directory with its own tokenizer.json', async () => {
    const bin = await loadModel(m.checkpoint);
    const dir = path.join(tmp, 'hf');
    await writeHfCheckpoint(dir, bin.config, bin.weights);
    const vocab = parseLlama2cTokenizer(new Uint8Array(readFileSync(m.tokenizer)));
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(llama2cToTokenizerJson(vocab)));
    const fixture = JSON.parse(readFileSync(m.fixtures, 'utf8').split('\n')[3]) as { prompt: string; prompt_ids: number[]; output_ids: number[] };
    const r = await sssd(['generate', '--model', dir, '--prompt', fixture.prompt, '--max-tokens', String(fixture.output_ids.length), '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; output_ids: number[]; finish_reason: string };
    expect(out.prompt_ids).toEqual(fixture.prompt_ids);
    expect(out.output_ids).toEqual(fixture.output_ids);
  });

  const truncated = path.join(tmp, 'truncated.bin');
  writeFileSync(truncated, readFileSync(m.checkpoint).subarray(0, 500_000));
  const garbage = path.join(tmp, 'garbage.bin');
  writeFileSync(garbage, Buffer.from('this is not a checkpoint at all, just some text'));
  const longPrompt = 'a'.repeat(400); // character-level tokenizer: > 256 tokens

  const cases: Array<[string, string[], RegExp]> = [
    ['a missing checkpoint', ['--model', path.join(tmp, 'nope.bin'), '--tokenizer', m.tokenizer], /model not found/],
    ['a truncated checkpoint', ['--model', truncated, '--tokenizer', m.tokenizer], /truncated/],
    ['a file that is not a checkpoint', ['--model', garbage, '--tokenizer', m.tokenizer], /not a llama2\.c checkpoint/],
    ['a missing tokenizer', ['--model', m.checkpoint, '--tokenizer', path.join(tmp, 'nope.tok')], /tokenizer not found/],
    // llama2xs has no tokenizer beside it (it uses stories260K's).
    ['no tokenizer beside a .bin', ['--model', models.llama2xs.checkpoint], /No tokenizer found beside --model .*llama2xs\.bin .*set --tokenizer \(or SSSD_TOKENIZER\) to the model's tokenizer file/],
    ['a missing checkpoint, no tokenizer given', ['--model', path.join(tmp, 'nope.bin')], /model not found: .*nope\.bin/],
    // Relative: the path looked at, from the folder it runs in (the repository here), is named too.
    ['a missing checkpoint by a relative path', ['--model', 'nope.bin'], new RegExp(`model not found: nope\\.bin \\(looked for ${path.join(repoRoot, 'nope.bin').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`)],
    ['a tokenizer of another vocabulary', ['--model', models.babyllama105.checkpoint, '--tokenizer', m.tokenizer], /512 tokens but model babyllama105 expects 105/],
    ['a prompt longer than the context', ['--model', models.babyllama105.checkpoint, '--tokenizer', models.babyllama105.tokenizer, '--prompt', longPrompt], /longer|more than the model's context/],
    ['a bad --max-tokens', ['--model', m.checkpoint, '--tokenizer', m.tokenizer, '--max-tokens', 'ten'], /--max-tokens must be/],
    ['a negative --temperature', ['--model', m.checkpoint, '--tokenizer', m.tokenizer, '--temperature', '-1'], /--temperature must be/],
    ['a --top-p of 0', ['--model', m.checkpoint, '--tokenizer', m.tokenizer, '--top-p', '0'], /--top-p must be/],
  ];
  it.each(cases)('rejects %s with a one-line message', async (_what, args, message) => {
    // The last --max-tokens wins, so a case's own value overrides the default 4.
    const r = await sssd(['generate', '--max-tokens', '4', ...args]);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  // Root reads any file: there, the run is as `nobody` (a service account's view), where runuser exists.
  const asRoot = process.getuid?.() === 0;
  const canRunAsOther = !asRoot || existsSync('/usr/sbin/runuser') || existsSync('/sbin/runuser');
  it.runIf(canRunAsOther)('says a file it may not read is unreadable, not missing, in one line', async () => {
    // Reached (the files' own modes refuse them, not a folder on the way: the model is found, then not read).
    const dir = path.join(tmp, 'unreadable');
    chmodSync(tmp, 0o711);
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const model = path.join(dir, 'model.bin');
    const tokenizer = path.join(dir, 'tok.bin');
    copyFileSync(m.checkpoint, model);
    copyFileSync(m.tokenizer, tokenizer);
    for (const file of [model, tokenizer]) chmodSync(file, 0o000);
    const run = (args: string[]): Promise<Run> => sssd(['generate', '--max-tokens', '2', ...args], { cacheDir: path.join(dir, 'cache'), as: asRoot ? 'nobody' : undefined });
    for (const [args, said] of [
      [['--model', model, '--tokenizer', m.tokenizer], `model ${model} cannot be read: permission denied`],
      [['--model', m.checkpoint, '--tokenizer', tokenizer], `tokenizer ${tokenizer} cannot be read: permission denied`],
    ] as const) {
      const r = await run([...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`sssd: ${said}\n`);
    }
  });

  it('takes seeds as the API does (negative ones as int64 bits): -7 samples what 2^53 - 7 does', async () => {
    const run = async (seed: string): Promise<{ output_ids: number[]; seed: number }> => {
      const r = await sssd(['generate', '--model', m.checkpoint, '--tokenizer', m.tokenizer, '--prompt', 'Once upon a time', '--max-tokens', '24', '--temperature', '1', '--seed', seed, '--json']);
      expect(r.code, r.stderr).toBe(0);
      // Echoed with the digits given.
      expect(r.stdout).toContain(`"seed":${seed},`);
      return JSON.parse(r.stdout) as { output_ids: number[]; seed: number };
    };
    const sampled = async (seed: string): Promise<number[]> => (await run(seed)).output_ids;
    // Six processes at once: each loads the model and samples alone.
    const [negative, wrapped, seven, lowest, one, highest] = await Promise.all([
      sampled('-7'),
      sampled(String(2 ** 53 - 7)),
      sampled('7'),
      sampled('-9007199254740991'),
      sampled('1'),
      run('9007199254740991'),
    ]);
    expect(negative).toEqual(wrapped);
    expect(negative).not.toEqual(seven);
    // The ends of the range, used as given: -(2^53 - 1) is 2^64 - 2^53 + 1 in int64 bits, seed 1 in the pool's 53.
    expect(lowest).toEqual(one);
    expect(highest.seed).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('refuses a seed past 2^53 - 1, naming the range, rather than use and echo it rounded (2^63 - 1 was echoed as 9223372036854776000)', async () => {
    const seeds = ['18446744073709551615', '12345678901234567890', '9223372036854775807', '9007199254740992', '-9007199254740992', '9007199254740990.6'];
    const refusals = await Promise.all(seeds.map((seed) => sssd(['generate', '--model', m.checkpoint, '--tokenizer', m.tokenizer, '--max-tokens', '2', '--temperature', '1', '--seed', seed, '--json'])));
    for (const [i, seed] of seeds.entries()) {
      const r = refusals[i];
      expect(r.code, seed).toBe(2);
      expect(r.stdout, seed).toBe('');
      expect(r.stderr, seed).toBe(`sssd: --seed must be an integer >= -9007199254740991 and <= 9007199254740991 (2^53 - 1: past it, seeds are rounded to others as JavaScript reads them), not "${seed}"\n`);
    }
  });

  it('answers a usage mistake (a typo in a flag, an unknown command, a missing option) with one line and exit 2, as its other refusals', async () => {
    const [typo, unknown, missing, help, version] = await Promise.all([
      sssd(['generate', '--model', m.checkpoint, '--max-token', '5']),
      sssd(['frobnicate']),
      sssd(['generate']),
      sssd(['generate', '--help']),
      // What a bug report should name.
      sssd(['--version']),
    ]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/unknown option '--max-token'\n\(Did you mean --max-tokens\?\)\n\(add --help for usage\)\n$/);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).not.toMatch(/Usage:/);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '--model <path>' not specified/);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: sssd generate/);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^sssd-serve \d+\.\d+\.\d+ \(edge-pool protocol 1\)\n$/);
  });
});
