/**
 * The V8 heap setting the pool runs under, and the relaunch that applies it
 * when `sssd pool` was started without it.
 *
 * Every forward pass hands back its logits and new keys/values as fresh
 * ArrayBuffers (onnxruntime-node copies each output into one): ~3.3 KB per
 * token of the pass on stories260K, garbage once the step has read them. V8
 * counts their bytes as external memory against the old generation's
 * allocation limit, which it sets from the live heap (~16 MB here, a limit of
 * ~40 MB, less the young generation's 16 MiB). A pool verifying ~12-token
 * trees reached it every ~130 ms: a full mark-compact each time (13 in a
 * 2.3 s level at concurrency 1), where `off`, one token a pass, ran none. An
 * initial old-generation size of 256 MiB leaves that limit far above the
 * live heap: 2 mark-compacts in the same level, `sssd` +8% at concurrency 1,
 * `off` unchanged, ~25-30 MB more resident memory (docs/benchmarks.md, "The
 * forward pass's outputs and V8's collector"). A 1 MiB young generation also
 * stopped the mark-compacts but slowed `off` by 6% (scavenges 8 times as
 * often), so the young generation keeps node's default.
 *
 * A flag V8 reads only at start-up, so it has to be on node's command line:
 * the launchers (`npm start`, the tests) put it there, and `bin/sssd.mjs`
 * relaunches a `pool` started without it.
 */
import { spawn } from 'node:child_process';
import { logLine } from '../metrics/log-line';

/** Node flags for the pool process. */
export const POOL_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=256'];

/** Flags that size the old generation's start; one the user gave wins over ours. */
const OLD_SPACE_FLAG = /^--initial[-_](old[-_]space|heap)[-_]size(=|$)/;

/** The initial old-generation size node already runs with (this one or the user's), from its command line or NODE_OPTIONS; null: the default. */
export function oldSpaceFlag(execArgv: readonly string[], nodeOptions: string | undefined): string | null {
  const options = (nodeOptions ?? '').split(/\s+/).filter(Boolean);
  return [...execArgv, ...options].find((arg) => OLD_SPACE_FLAG.test(arg)) ?? null;
}

/**
 * The node arguments to relaunch `argv` (process.argv: node, script, command…)
 * with POOL_NODE_FLAGS, or null when it needs none: not the `pool` command
 * (help included), or node has an initial old-generation size already.
 */
export function poolRelaunchArgs(argv: readonly string[], execArgv: readonly string[], nodeOptions: string | undefined): string[] | null {
  const [, script, command, ...rest] = argv;
  if (command !== 'pool' || script === undefined) return null;
  if (rest.some((a) => a === '--help' || a === '-h')) return null;
  if (oldSpaceFlag(execArgv, nodeOptions) !== null) return null;
  return [...POOL_NODE_FLAGS, ...execArgv, script, command, ...rest];
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs node with `args` as a child sharing this process's stdio, forwards
 * SIGINT/SIGTERM/SIGHUP to it, and ends this process as the child ended (its
 * exit code, or the same signal). A ^C in a terminal reaches both processes;
 * the pool takes a signal that arrives twice at once as one
 * (pool-command.ts). The child also gets an IPC channel, used for nothing but
 * its closing: a parent killed with SIGKILL forwards no signal, and the pool
 * stops when the channel closes instead of serving on, orphaned.
 */
export function relaunch(args: readonly string[]): Promise<never> {
  return new Promise<never>(() => {
    const child = spawn(process.execPath, args, { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
    const handlers = FORWARDED.map((signal) => {
      const forward = (): void => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      };
      process.on(signal, forward);
      return [signal, forward] as const;
    });
    child.on('error', (err) => {
      logLine(`sssd: cannot start ${process.execPath}: ${err.message}`);
      process.exit(1);
    });
    child.on('exit', (code, signal) => {
      for (const [name, forward] of handlers) process.off(name, forward);
      if (signal) process.kill(process.pid, signal);
      else process.exit(code ?? 1);
    });
  });
}
