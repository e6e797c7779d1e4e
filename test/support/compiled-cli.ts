/**
 * Commands for tests that start them as child processes again and again:
 * node's arguments before the command's own, running the file as compiled
 * once for this run (compiled-cli.setup.ts) rather than through tsx at each
 * start. The same code, with ~1 s less CPU a start; each suite still runs its
 * command's own file (bin/sssd.mjs, `tsx launcher/…`) somewhere, and tests
 * about that file itself (its tsx loading, its relaunch) run only it.
 */
import { inject } from 'vitest';

/** `node ARGS`: a source the run compiled (bin/sssd.mjs, or a launcher file a package.json script runs with tsx). */
export function compiledNodeArgs(source: string): string[] {
  const compiled = inject('compiledCommands')[source];
  if (compiled === undefined) throw new Error(`${source} is not compiled for the tests (test/support/compiled-cli.setup.ts compiles bin/sssd.mjs and package.json's tsx scripts)`);
  // Stack traces name the .ts lines, as under tsx.
  return ['--enable-source-maps', compiled];
}

/** `sssd`: bin/sssd.mjs, compiled. */
export function sssdNodeArgs(): string[] {
  return compiledNodeArgs('bin/sssd.mjs');
}
