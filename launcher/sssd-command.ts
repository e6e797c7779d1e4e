/**
 * `sssd` command line: one subcommand per file, each exporting `register`
 * (the pool's, its datastore's and its benchmarks' in gpu-pool/cli/, `up`
 * here, as it starts the pool and the edge together, and `key` and `kv`, the edge's).
 * Errors meant for users (CliError, and any error carrying `userMessage`) are
 * printed plainly; anything else is a bug and keeps its stack trace.
 */
import { Command, CommanderError } from 'commander';
import { PROTOCOL_VERSION } from '../shared/protocol';
import { CliError } from '../gpu-pool/cli/cli-error';
import { packageVersion } from '../gpu-pool/cli/package-version';
import { register as registerGenerate } from '../gpu-pool/cli/generate-command';
import { register as registerBenchDecode } from '../gpu-pool/cli/bench-decode-command';
import { register as registerDatastore } from '../gpu-pool/cli/datastore-command';
import { register as registerEvalDrafts } from '../gpu-pool/cli/eval-drafts-command';
import { register as registerPool } from '../gpu-pool/cli/pool-command';
import { register as registerBenchServe } from '../gpu-pool/cli/bench-serve-command';
import { register as registerUp } from './up-command';
import { register as registerBenchDrafting } from '../gpu-pool/cli/bench-drafting-command';
import { register as registerSoak } from '../gpu-pool/cli/soak-command';
import { register as registerKey } from './key-command';
import { register as registerKv } from './kv-command';

/** package.json's version, and the protocol's: what a bug report should name. */
function versionLine(): string {
  return `sssd-serve ${packageVersion()} (edge-pool protocol ${PROTOCOL_VERSION})`;
}

export function buildProgram(): Command {
  const program = new Command('sssd')
    .description('SSSD speculative decoding: edge drafting, pooled tree verification')
    .version(versionLine(), '-V, --version', 'the version of sssd-serve (package.json), and of the edge-pool protocol')
    .exitOverride()
    // One line, not the whole help: the mistake stays on screen.
    .showHelpAfterError('(add --help for usage)');
  registerGenerate(program);
  registerBenchDecode(program);
  registerDatastore(program);
  registerEvalDrafts(program);
  registerPool(program);
  registerBenchServe(program);
  registerUp(program);
  registerBenchDrafting(program);
  registerSoak(program);
  registerKey(program);
  registerKv(program);
  return program;
}

/** Settings every command reads from the environment, checked before any runs (onnxruntime threw deep inside on SSSD_THREADS=-1, and took "abc" for 1). */
function checkEnvironment(): void {
  const threads = process.env.SSSD_THREADS;
  if (threads !== undefined && threads !== '' && !(/^[1-9]\d{0,2}$/.test(threads.trim()) && Number(threads) <= 256)) {
    throw new CliError(`SSSD_THREADS must be an integer from 1 to 256 (onnxruntime's intra-op threads), not "${threads}"`);
  }
}

export async function main(argv: string[]): Promise<void> {
  try {
    checkEnvironment();
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // A usage mistake exits 2, as every other refusal of ours does; --help and --version exit 0.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof CliError) {
      process.stderr.write(`sssd: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
