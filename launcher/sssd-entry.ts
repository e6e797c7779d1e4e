/**
 * `sssd` as node runs it again for a child: node's arguments before the
 * command's own. `sssd up` (and the stack the tests and benches start) runs
 * the pool and the default datastore's build so, as a user runs sssd:
 * bin/sssd.mjs, its TypeScript compiled on load by tsx. One name for it, so a
 * build of the command that is compiled already (the tests', once per run:
 * test/support/compiled-cli.setup.ts) starts its children as it runs itself.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SSSD_NODE_ARGS: readonly string[] = [path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'sssd.mjs')];
