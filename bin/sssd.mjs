#!/usr/bin/env node
// The `sssd` command. The sources are TypeScript; tsx compiles them on load so
// `npx sssd …` works straight after `npm install`, with no build step.
import { register } from 'tsx/esm/api';

// A terminal that closed (EIO), or a reader that left a pipe (EPIPE), fails
// writes to stdout and stderr; unhandled, that error ended the process: a
// pool hung up mid-drain died as its first log line went out, its streams cut
// and its contributed outputs unsaved. Logging is lost then, the work is not.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

register();
// `pool` runs under a V8 heap flag that only node's command line can set
// (gpu-pool/cli/pool-node-flags.ts): started without it, it is relaunched with it.
const { poolRelaunchArgs, relaunch } = await import('../gpu-pool/cli/pool-node-flags.ts');
const relaunchArgs = poolRelaunchArgs(process.argv, process.execArgv, process.env.NODE_OPTIONS);
if (relaunchArgs) await relaunch(relaunchArgs);
const { main } = await import('../launcher/sssd-command.ts');
await main(process.argv);
