/**
 * Flags of the launcher benchmarks (bench-edge-cpu, bench-edge-delay,
 * bench-sampling): node:util's parseArgs, numbers checked as the `sssd` CLI
 * checks them, so a typo is a one-line error and exit status 2 before any
 * process starts, not NaN figures after a minute of setup.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from '../gpu-pool/cli/cli-error';
import { parseNumberFlag, type NumberFlagRange } from '../gpu-pool/cli/number-flags';

/** The options a benchmark takes: string flags (checked after parsing) and boolean switches. */
type BenchOptions = Record<string, { type: 'string'; default: string } | { type: 'boolean'; default?: boolean }>;

/** Parsed values: a string per string flag (its default when absent), a boolean per switch. */
type BenchFlagValues<O extends BenchOptions> = { [K in keyof O]: O[K] extends { type: 'boolean' } ? boolean : string };

/** `--help`'s text: what the benchmark does, then each flag with its default. */
function usage(about: string, options: BenchOptions): string {
  const lines = Object.entries(options).map(([name, o]) => `  --${name}${o.type === 'string' ? ` <value>  (default ${o.default})` : ''}`);
  return `${about}\n\nOptions:\n${lines.join('\n')}\n  --help  this text\n`;
}

/**
 * Parses `argv` (strict: unknown flags and positionals are errors); throws
 * CliError. `--help` prints `about` and the flags with their defaults, and
 * exits 0, as every `sssd` command does.
 */
export function parseBenchFlags<O extends BenchOptions>(options: O, argv: string[], about: string): BenchFlagValues<O> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage(about, options));
    process.exit(0);
  }
  try {
    const { values } = parseArgs({ options, args: argv, strict: true, allowPositionals: false } as ParseArgsConfig);
    return values as BenchFlagValues<O>;
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

/** A numeric flag's value, checked (see parseNumberFlag). */
export function numberFlag(name: string, raw: string, range: NumberFlagRange): number {
  return parseNumberFlag(`--${name}`, raw, range)!;
}

/** One of `allowed`, else CliError. */
export function choiceFlag<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(raw)) throw new CliError(`--${name} must be one of ${allowed.join(', ')}, not "${raw}"`);
  return raw as T;
}

/**
 * Runs a benchmark's body: a CliError (a bad flag, missing data) prints as
 * `error: …` and sets exit status 2; anything else is a bug and keeps its stack.
 */
export async function runBenchmark(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
