#!/usr/bin/env node
// The `sssd` command. The sources are TypeScript: compiled once into
// .cache/cli and kept while they are unchanged (launcher/cli-build.mjs), or,
// where that cannot be, compiled on load by tsx; either way `npx sssd …` works
// straight after `npm install`, with no build step.

// A terminal that closed (EIO), or a reader that left a pipe (EPIPE), fails
// writes to stdout and stderr; unhandled, that error ended the process: a
// pool hung up mid-drain died as its first log line went out, its streams cut
// and its contributed outputs unsaved. Logging is lost then, the work is not.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

const { compiledCli } = await import('../launcher/cli-build.mjs');
const compiled = await compiledCli();
if (compiled) {
  // Stack traces name the .ts lines, as under tsx.
  process.setSourceMapsEnabled(true);
} else {
  const { register } = await import('tsx/esm/api');
  register();
}
// `pool` runs under a V8 heap flag that only node's command line can set
// (gpu-pool/cli/pool-node-flags.ts): started without it, it is relaunched with it.
// (Each import's source named as a literal: the tests' build of this file bundles it, compiled-cli.setup.ts.)
const { poolRelaunchArgs, relaunch } = compiled ? await import(compiled['pool-node-flags']) : await import('../gpu-pool/cli/pool-node-flags.ts');
const relaunchArgs = poolRelaunchArgs(process.argv, process.execArgv, process.env.NODE_OPTIONS);
if (relaunchArgs) await relaunch(relaunchArgs);
const { main } = compiled ? await import(compiled['sssd-command']) : await import('../launcher/sssd-command.ts');
await main(process.argv);
