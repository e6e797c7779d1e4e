import type { BuildOptions } from 'esbuild';

/** How the command is compiled, here and for the tests: bundled and split by command, packages external, source maps. */
export const COMMAND_BUILD: BuildOptions;

/** What is built: `entries` (compiled name → source, relative to `root`), kept in `cacheDir`. */
export interface Project {
  root: string;
  cacheDir: string;
  entries: Record<string, string>;
}

/**
 * The compiled modules' URLs by entry name, built now where the kept build is stale; null where the command should
 * run through tsx (SSSD_CLI_BUILD=off, no esbuild, a source that does not build, a cache not writable). `project` is
 * the repository's own sssd but for tests.
 */
export function compiledCli(project?: Project): Promise<Record<string, string> | null>;
