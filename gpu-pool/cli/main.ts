/**
 * `sssd` command line: one subcommand per file, each exporting `register`.
 * Errors meant for users (CliError, and any error carrying `userMessage`) are
 * printed plainly; anything else is a bug and keeps its stack trace.
 */
import { Command, CommanderError } from 'commander';
import { CliError } from './cli-error';
import { register as registerGenerate } from './generate-command';
import { register as registerBenchDecode } from './bench-decode-command';
import { register as registerDatastore } from './datastore-command';
import { register as registerEvalDrafts } from './eval-drafts-command';
import { register as registerPool } from './pool-command';
import { register as registerBenchServe } from './bench-serve-command';
import { register as registerUp } from './up-command';
import { register as registerBenchDrafting } from './bench-drafting-command';
import { register as registerSoak } from './soak-command';

export function buildProgram(): Command {
  const program = new Command('sssd')
    .description('SSSD speculative decoding: edge drafting, pooled tree verification')
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
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
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
