/**
 * vitest globalSetup: compiles the commands tests start again and again, once
 * per run: bin/sssd.mjs (and the TypeScript it loads), and the launcher files
 * package.json's scripts run through tsx (`npm run bench:…`). Tests start
 * them through compiled-cli.ts.
 *
 * Under tsx each start cost ~1-1.5 s of CPU before the command ran (the
 * loader's hook thread, every module resolved and loaded through it); the
 * suite's some hundred starts paid minutes of it on CI's two cores. The build
 * is the same sources through the same compiler (tsx is esbuild), with three
 * differences kept out of sight of the code: `tsx/esm/api` is a no-op, and
 * so is bin/sssd.mjs's own kept build (launcher/cli-build.mjs) (the code is
 * compiled already); each file's `import.meta.url` is its source
 * file's, so paths beside it (package.json, the graph cache, the worker
 * scripts, the orphan guard) resolve as under tsx; and the sssd a command
 * starts again for a child (launcher/sssd-entry.ts: `sssd up`'s pool and
 * datastore build) is the compiled one, as bin/sssd.mjs starts bin/sssd.mjs.
 * Packages stay external, loaded from node_modules as usual; commands stay
 * split, loaded when named.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { COMMAND_BUILD } from '../../launcher/cli-build.mjs';
import type { TestProject } from 'vitest/node';
import { repoRoot } from './shared-data';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Each compiled command's source (relative to the repository) and its compiled file (compiled-cli.ts reads it). */
    compiledCommands: Record<string, string>;
  }
}

/** The file that names the `sssd` a command starts again for a child (`up`'s pool and datastore build); esbuild loads it by its real path. */
const sssdEntry = realpathSync(path.join(repoRoot, 'launcher', 'sssd-entry.ts'));
/** bin/sssd.mjs's own kept build (launcher/cli-build.mjs): this build is the compiled command already, so it answers "none". */
const cliBuild = realpathSync(path.join(repoRoot, 'launcher', 'cli-build.mjs'));

/**
 * As under tsx, except that the sssd a compiled command starts again for a child is the compiled one in `outdir`
 * (with --enable-source-maps, as compiled-cli.ts starts it), as bin/sssd.mjs starts bin/sssd.mjs: `sssd up`'s pool
 * without tsx's start. `replaced` is told that it was, so that a moved file is an error rather than tsx again unseen.
 */
function asUnderTsx(outdir: string, replaced: () => void): Plugin {
  const compiledSssd = ['--enable-source-maps', path.join(outdir, `${compiledName('bin/sssd.mjs')}.mjs`)];
  return {
    name: 'as-under-tsx',
    setup(b) {
      b.onResolve({ filter: /^tsx\/esm\/api$/ }, () => ({ path: 'tsx-esm-api', namespace: 'compiled' }));
      b.onLoad({ filter: /.*/, namespace: 'compiled' }, () => ({ contents: 'export function register() {}', loader: 'js' }));
      b.onLoad({ filter: /\.(ts|mjs)$/ }, async ({ path: file }) => {
        if (file === cliBuild) return { contents: 'export async function compiledCli() { return null; }', loader: 'js' };
        if (file === sssdEntry) {
          replaced();
          return { contents: `export const SSSD_NODE_ARGS = ${JSON.stringify(compiledSssd)};`, loader: 'ts' };
        }
        return {
          contents: (await readFile(file, 'utf8')).replaceAll('import.meta.url', JSON.stringify(pathToFileURL(file).href)),
          loader: file.endsWith('.ts') ? 'ts' : 'js',
        };
      });
    },
  };
}

/** bin/sssd.mjs, and each file a package.json script runs with `tsx FILE`. */
function commandSources(): string[] {
  const { scripts } = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const viaTsx = Object.values(scripts).flatMap((script) => /^tsx (\S+\.ts)$/.exec(script)?.[1] ?? []);
  return ['bin/sssd.mjs', ...viaTsx];
}

/** The compiled file of each source: its name without the extension, in `outdir`. */
function compiledName(source: string): string {
  return path.basename(source).replace(/\.[cm]?[jt]s$/, '');
}

async function compile(sources: readonly string[], outdir: string): Promise<void> {
  let entryReplaced = false;
  await build({
    entryPoints: sources.map((source) => ({ in: path.join(repoRoot, source), out: compiledName(source) })),
    outdir,
    ...COMMAND_BUILD,
    tsconfig: path.join(repoRoot, 'tsconfig.json'),
    logLevel: 'warning',
    plugins: [asUnderTsx(outdir, () => (entryReplaced = true))],
  });
  if (!entryReplaced) throw new Error(`${sssdEntry} was not part of the compiled sssd: its children would start through tsx (compiled-cli.setup.ts)`);
}

/** A run's folder that its run left (stopped before its teardown): its process is gone. */
function leftBehind(name: string): boolean {
  const pid = Number(/^run-(\d+)-/.exec(name)?.[1]);
  if (!Number.isInteger(pid)) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  // Inside the repository, so the compiled files find node_modules as the sources do.
  const runs = path.join(repoRoot, '.cache', 'test-cli');
  if (existsSync(runs)) for (const name of readdirSync(runs).filter(leftBehind)) rmSync(path.join(runs, name), { recursive: true, force: true });
  const outdir = path.join(runs, `run-${process.pid}-${Date.now()}`);
  mkdirSync(outdir, { recursive: true });
  const sources = commandSources();
  await compile(sources, outdir);
  // In watch mode, the sources as they are now at each rerun.
  project.onTestsRerun(() => compile(sources, outdir));
  project.provide('compiledCommands', Object.fromEntries(sources.map((source) => [source, path.join(outdir, `${compiledName(source)}.mjs`)])));
  return () => rmSync(outdir, { recursive: true, force: true });
}
