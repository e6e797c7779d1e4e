// The `sssd` command's compiled build (launcher/cli-build.mjs), on a small project of its own with the real esbuild:
// kept while its sources are unchanged, built again when one changes, and never run stale or in place of tsx's error
// where a source does not build or the cache cannot be written.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { compiledCli, type Project } from '../../launcher/cli-build.mjs';
import { repoRoot } from '../support/shared-data';

const run = promisify(execFile);

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A project of two entries, one importing a module beside it and naming its own import.meta.url. */
function project(): Project {
  const root = mkdtempSync(path.join(tmpdir(), 'sssd-cli-build-'));
  dirs.push(root);
  mkdirSync(path.join(root, 'src'));
  writeFileSync(path.join(root, 'tsconfig.json'), '{"compilerOptions":{"strict":true}}');
  writeFileSync(path.join(root, 'src', 'word.ts'), "export const word: string = 'first';\n");
  writeFileSync(path.join(root, 'src', 'main.ts'), "import { word } from './word';\nexport const said = (): string => word;\nexport const where = import.meta.url;\n");
  writeFileSync(path.join(root, 'src', 'other.ts'), 'export const other = 2;\n');
  // Saved a minute ago: a file saved as a build starts may have been read before it (the build is then used once, not kept).
  const before = new Date(Date.now() - 60_000);
  for (const file of ['tsconfig.json', 'src/word.ts', 'src/main.ts', 'src/other.ts']) utimesSync(path.join(root, file), before, before);
  return { root, cacheDir: path.join(root, '.cache', 'cli'), entries: { main: 'src/main.ts', other: 'src/other.ts' } };
}

/** The module at `url`, loaded afresh (a new build is a new file; the same build's file is one module). */
async function load(url: string): Promise<{ said: () => string; where: string }> {
  return (await import(url)) as { said: () => string; where: string };
}

/** Writes `file` as an editor's save half a minute ago would have: its mtime moves (the project's were a minute ago). */
function saved(file: string, contents: string): void {
  writeFileSync(file, contents);
  const later = new Date(Date.now() - 30_000);
  utimesSync(file, later, later);
}

describe('the compiled sssd command', () => {
  it('is built once and kept while its sources are unchanged; a changed source is built again, the old build left for the processes it runs', async () => {
    const p = project();
    const first = await compiledCli(p);
    expect(first).not.toBe(null);
    expect(Object.keys(first!).sort()).toEqual(['main', 'other']);
    const main = await load(first!.main);
    expect(main.said()).toBe('first');
    // Paths beside a file resolve as they do from its source.
    expect(main.where).toBe(pathToFileURL(path.join(p.root, 'src', 'main.ts')).href);
    // Kept: the same build, nothing written.
    expect(await compiledCli(p)).toEqual(first);
    expect(readdirSync(p.cacheDir).filter((name) => name.startsWith('build-'))).toHaveLength(1);

    // A module the entry imports changed: built again, and the change runs.
    saved(path.join(p.root, 'src', 'word.ts'), "export const word: string = 'second';\n");
    const second = await compiledCli(p);
    expect(second!.main).not.toBe(first!.main);
    expect((await load(second!.main)).said()).toBe('second');
    expect(readdirSync(p.cacheDir).filter((name) => name.startsWith('build-'))).toHaveLength(2);
    expect(await compiledCli(p)).toEqual(second);
    // The config the build reads is one of its inputs too.
    saved(path.join(p.root, 'tsconfig.json'), '{"compilerOptions":{"strict":true,"target":"ES2022"}}');
    expect((await compiledCli(p))!.main).not.toBe(second!.main);
  });

  it('runs through tsx (null) where a source does not build, leaving no build behind, and again once it is mended', async () => {
    const p = project();
    const good = await compiledCli(p);
    saved(path.join(p.root, 'src', 'word.ts'), "export const word: string = 'unclosed;\n");
    expect(await compiledCli(p)).toBe(null);
    // The kept build is not run for it, and the failed one left nothing.
    expect(readdirSync(p.cacheDir).filter((name) => name.startsWith('build-'))).toEqual([path.basename(path.dirname(new URL(good!.main).pathname))]);
    saved(path.join(p.root, 'src', 'word.ts'), "export const word: string = 'mended';\n");
    expect((await load((await compiledCli(p))!.main)).said()).toBe('mended');
  });

  it('runs through tsx where the cache cannot be written, or SSSD_CLI_BUILD=off says so', async () => {
    const p = project();
    mkdirSync(path.dirname(p.cacheDir));
    writeFileSync(p.cacheDir, 'a file where the cache folder would be');
    expect(await compiledCli(p)).toBe(null);
    expect(readFileSync(p.cacheDir, 'utf8')).toBe('a file where the cache folder would be');

    const q = project();
    process.env.SSSD_CLI_BUILD = 'off';
    try {
      expect(await compiledCli(q)).toBe(null);
    } finally {
      delete process.env.SSSD_CLI_BUILD;
    }
    expect(await compiledCli(q)).not.toBe(null);
  });

  it('is what bin/sssd.mjs runs: a start leaves the repository a current build of the command, its sources its inputs', async () => {
    const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin', 'sssd.mjs'), 'key', 'create', '--json'], { cwd: repoRoot });
    expect(JSON.parse(stdout)).toMatchObject({ key: expect.stringMatching(/^sk-/) as unknown as string });
    const record = JSON.parse(readFileSync(path.join(repoRoot, '.cache', 'cli', 'current.json'), 'utf8')) as { dir: string; inputs: Array<[string, number, number]> };
    expect(record.inputs.map(([file]) => file)).toEqual(expect.arrayContaining(['launcher/sssd-command.ts', 'launcher/key-command.ts', 'gpu-pool/cli/pool-node-flags.ts', 'tsconfig.json']));
    expect(readdirSync(path.join(repoRoot, '.cache', 'cli', record.dir))).toEqual(expect.arrayContaining(['sssd-command.mjs', 'pool-node-flags.mjs']));
  }, 60_000);
});
