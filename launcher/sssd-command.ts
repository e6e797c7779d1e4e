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
/** One subcommand's module: it adds itself, its flags and its action, to the program. */
type CommandModule = { register(program: Command): void };

/**
 * The subcommands by name, each loaded only when named: a module brings its
 * whole part of the system (the pool's onnxruntime, the datastore, the
 * launcher), and loading all eleven cost every `sssd` run ~2.3 s of CPU
 * before it read a flag (review h164). In the order `--help` lists them.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<CommandModule>]> = [
  ['generate', () => import('../gpu-pool/cli/generate-command')],
  ['bench-decode', () => import('../gpu-pool/cli/bench-decode-command')],
  ['datastore', () => import('../gpu-pool/cli/datastore-command')],
  ['eval-drafts', () => import('../gpu-pool/cli/eval-drafts-command')],
  ['pool', () => import('../gpu-pool/cli/pool-command')],
  ['bench-serve', () => import('../gpu-pool/cli/bench-serve-command')],
  ['up', () => import('./up-command')],
  ['bench-drafting', () => import('../gpu-pool/cli/bench-drafting-command')],
  ['soak', () => import('../gpu-pool/cli/soak-command')],
  ['key', () => import('./key-command')],
  ['kv', () => import('./kv-command')],
];

/** package.json's version, and the protocol's: what a bug report should name. */
function versionLine(): string {
  return `sssd-serve ${packageVersion()} (edge-pool protocol ${PROTOCOL_VERSION})`;
}

/**
 * The program with the subcommand `argv` names (process.argv: node, script,
 * command…), or with every one where it names none it knows: the top-level
 * help lists them all, and a mistyped name is answered with the nearest.
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('sssd')
    .description('SSSD speculative decoding: edge drafting, pooled tree verification')
    .version(versionLine(), '-V, --version', 'the version of sssd-serve (package.json), and of the edge-pool protocol')
    .exitOverride()
    // One line, not the whole help: the mistake stays on screen.
    .showHelpAfterError('(add --help for usage)');
  const named = COMMANDS.find(([name]) => name === argv[2]);
  for (const [, load] of named ? [named] : COMMANDS) (await load()).register(program);
  return program;
}

/** Settings every command reads from the environment, checked before any runs (onnxruntime threw deep inside on SSSD_THREADS=-1, and took "abc" for 1). */
function checkEnvironment(): void {
  const threads = process.env.SSSD_THREADS;
  if (threads !== undefined && threads !== '' && !(/^[1-9]\d{0,2}$/.test(threads.trim()) && Number(threads) <= 256)) {
    throw new CliError(`SSSD_THREADS must be an integer from 1 to 256 (onnxruntime's intra-op threads), not "${threads}"`);
  }
}

/**
 * `help X` of a command X that does not exist printed the whole help without a word of X (review h166): it is read
 * as `X` alone, which commander answers with "unknown command 'X'" and the nearest name, exit 2.
 */
function helpOfUnknownCommand(argv: readonly string[]): string[] | null {
  const [node, script, first, named] = argv;
  if (first !== 'help' || named === undefined || named.startsWith('-') || COMMANDS.some(([name]) => name === named)) return null;
  return [node, script, named];
}

export async function main(argv: string[]): Promise<void> {
  try {
    checkEnvironment();
    const args = helpOfUnknownCommand(argv) ?? argv;
    await (await buildProgram(args)).parseAsync(args);
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
