// The `sssd` command's TypeScript, compiled once and kept in .cache/cli, so
// that a start does not pay tsx's loader again: its hook thread resolves and
// transforms every module the command loads, ~1-1.5 s of CPU a start (`sssd
// pool` started twice, for its heap flag: ~2 s more before it listened, on
// this 2-core machine), where the compiled command loads in ~0.3 s.
//
// The build is the same sources through the same compiler tsx uses
// (esbuild), bundled with packages external and split by command, so a
// command loads only what it runs (`key create` no onnxruntime). Each file's
// `import.meta.url` stays its source's, so what code finds beside itself
// (package.json, the graph cache, worker scripts, the orphan guard) is found
// as under tsx.
//
// Kept while every file it was built from is as it was (size and mtime, one
// stat each at start: a few ms): a changed source is built again at the
// next start (~1-2 s, once), and one that fails to build, or a repository the
// cache cannot be written in, runs through tsx as before, so nothing is ever
// run stale and nothing fails for want of the cache. SSSD_CLI_BUILD=off runs
// through tsx always.
// Plain JavaScript: it runs before any TypeScript can be loaded.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The modules bin/sssd.mjs loads, by the name their compiled files get. */
const ENTRIES = { 'pool-node-flags': 'gpu-pool/cli/pool-node-flags.ts', 'sssd-command': 'launcher/sssd-command.ts' };
/** Read by the build besides its inputs: a change in either builds again. */
const CONFIG_FILES = ['tsconfig.json', 'package.json'];
/** How close to a build's start a file's mtime may be for the build to be trusted to have read it as it is now. */
const SAVED_WHILE_BUILDING_MARGIN_MS = 50;
/** A build the current one replaced is removed this long after it was made (a process started from it may still load its chunks). */
const KEEP_OLD_BUILD_MS = 24 * 3600 * 1000;

/**
 * @typedef {{ dir: string, esbuild: string, node: string, inputs: Array<[string, number, number]> }} BuildRecord
 * inputs: each file the build read (relative to the repository), its mtime (ms) and size.
 * @typedef {{ root: string, cacheDir: string, entries: Record<string, string> }} Project
 * What is built: `entries` (compiled name → source, relative to `root`), kept in `cacheDir`.
 */

/** @param {Project} project @param {string} file @returns {[number, number] | null} */
function stamp(project, file) {
  try {
    const s = statSync(path.join(project.root, file));
    return [s.mtimeMs, s.size];
  } catch {
    return null;
  }
}

/** @param {Project} project @returns {BuildRecord | null} the current build, where every file it was built from is unchanged. */
function currentBuild(project, esbuildVersion) {
  /** @type {BuildRecord} */
  let record;
  try {
    record = JSON.parse(readFileSync(path.join(project.cacheDir, 'current.json'), 'utf8'));
  } catch {
    return null;
  }
  if (record.esbuild !== esbuildVersion || record.node !== process.version || !existsSync(path.join(project.cacheDir, record.dir))) return null;
  for (const [file, mtime, size] of record.inputs) {
    const now = stamp(project, file);
    if (now === null || now[0] !== mtime || now[1] !== size) return null;
  }
  return record;
}

/**
 * How the command is compiled, here and for the tests (test/support/compiled-cli.setup.ts): bundled and split by
 * command, packages external, with source maps so that stack traces name the .ts lines, as under tsx (bin/sssd.mjs
 * turns source maps on; the tests start node with --enable-source-maps).
 */
export const COMMAND_BUILD = {
  bundle: true,
  splitting: true,
  format: 'esm',
  outExtension: { '.js': '.mjs' },
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
};

/** An esbuild plugin: each file's import.meta.url its source's. */
const sourceUrls = {
  name: 'source-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.(ts|mjs)$/ }, async ({ path: file }) => ({
      contents: (await readFile(file, 'utf8')).replaceAll('import.meta.url', JSON.stringify(pathToFileURL(file).href)),
      loader: file.endsWith('.ts') ? 'ts' : 'js',
    }));
  },
};

/** Builds into a folder of its own and makes it current; its record. @param {Project} project */
async function build(project, esbuild) {
  const started = Date.now();
  const dir = `build-${started}-${process.pid}`;
  const outdir = path.join(project.cacheDir, dir);
  mkdirSync(outdir, { recursive: true });
  let result;
  try {
    result = await esbuild.build({
      ...COMMAND_BUILD,
      entryPoints: Object.entries(project.entries).map(([out, source]) => ({ in: path.join(project.root, source), out })),
      absWorkingDir: project.root,
      outdir,
      tsconfig: path.join(project.root, 'tsconfig.json'),
      metafile: true,
      logLevel: 'silent',
      plugins: [sourceUrls],
    });
  } catch (err) {
    rmSync(outdir, { recursive: true, force: true });
    throw err;
  }
  const files = [...Object.keys(result.metafile.inputs).filter((file) => !file.includes('node_modules/')), ...CONFIG_FILES];
  const inputs = [];
  let changedDuring = false;
  for (const file of files) {
    const now = stamp(project, file);
    if (now === null) continue;
    // A file saved while the build read it: this build serves this start, and the next builds again. (The margin: file
    // times come from a coarser clock than Date.now(), a few ms behind.)
    if (now[0] >= started - SAVED_WHILE_BUILDING_MARGIN_MS) changedDuring = true;
    inputs.push([file, ...now]);
  }
  /** @type {BuildRecord} */
  const record = { dir, esbuild: esbuild.version, node: process.version, inputs };
  if (!changedDuring) {
    const current = path.join(project.cacheDir, 'current.json');
    const temp = `${current}.${process.pid}`;
    writeFileSync(temp, JSON.stringify(record));
    renameSync(temp, current);
    removeOldBuilds(project.cacheDir, dir);
  }
  return record;
}

/** Builds in `cacheDir` older than KEEP_OLD_BUILD_MS other than `keep`. */
function removeOldBuilds(cacheDir, keep) {
  for (const name of readdirSync(cacheDir)) {
    const made = Number(/^build-(\d+)-\d+$/.exec(name)?.[1]);
    if (name !== keep && Number.isFinite(made) && Date.now() - made > KEEP_OLD_BUILD_MS) rmSync(path.join(cacheDir, name), { recursive: true, force: true });
  }
}

/**
 * The compiled modules' URLs by entry name (ENTRIES), built now where the kept build is stale; null where the command
 * should run through tsx (SSSD_CLI_BUILD=off, no esbuild, a source that does not build, a cache not writable).
 * `project` is the repository's own sssd but for tests.
 * @param {Project} [project]
 * @returns {Promise<Record<string, string> | null>}
 */
export async function compiledCli(project = { root: repoRoot, cacheDir: path.join(repoRoot, '.cache', 'cli'), entries: ENTRIES }) {
  if (process.env.SSSD_CLI_BUILD === 'off') return null;
  try {
    // The installed esbuild's version from its package.json: loading esbuild itself costs ~0.1 s, paid only to build.
    const esbuildMain = createRequire(import.meta.url).resolve('esbuild');
    const { version } = JSON.parse(readFileSync(path.join(path.dirname(esbuildMain), '..', 'package.json'), 'utf8'));
    const record = currentBuild(project, version) ?? (await build(project, await import('esbuild')));
    return Object.fromEntries(Object.keys(project.entries).map((name) => [name, pathToFileURL(path.join(project.cacheDir, record.dir, `${name}.mjs`)).href]));
  } catch {
    // tsx then says what is wrong with a source that does not build, in its own words.
    return null;
  }
}
