/**
 * Numeric command-line flags: a user's typo becomes a one-line CliError that
 * names the flag and the accepted range, the same way in every subcommand.
 */
import { CliError } from './cli-error';

export interface NumberFlagRange {
  integer?: boolean;
  min?: number;
  max?: number;
  minExclusive?: boolean;
  /** Why the range is what it is, said after it in a refusal. */
  why?: string;
}

/**
 * A number written in decimal (`8`, `-1`, `0.25`), or NaN: Number() alone took
 * '' for 0, `0x10` for 16 and `1e3` for 1000, none of them what a flag means.
 */
export function decimalNumber(raw: string): number {
  return /^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$/.test(raw) ? Number(raw) : NaN;
}

/** Parses a numeric flag; a user's typo becomes a one-line CliError. */
export function parseNumberFlag(
  flag: string,
  raw: string | undefined,
  opts: NumberFlagRange,
): number | undefined {
  if (raw === undefined) return undefined;
  const v = decimalNumber(raw);
  const bad =
    // An integer by its digits, not once rounded (9007199254740990.6 read as 9007199254740991).
    !Number.isFinite(v) || (opts.integer && (!Number.isInteger(v) || /\.\d*[1-9]/.test(raw))) ||
    (opts.min !== undefined && (opts.minExclusive ? v <= opts.min : v < opts.min)) || (opts.max !== undefined && v > opts.max);
  if (bad) {
    const bounds = [
      opts.min !== undefined ? `${opts.minExclusive ? '>' : '>='} ${opts.min}` : '',
      opts.max !== undefined ? `<= ${opts.max}` : '',
    ].filter(Boolean);
    const range = `${opts.integer ? 'an integer' : 'a number'}${bounds.length > 0 ? ` ${bounds.join(' and ')}` : ''}`;
    throw new CliError(`${flag} must be ${range}${opts.why ? ` (${opts.why})` : ''}, not "${raw}"`);
  }
  return v;
}

/** A comma-separated list of numbers (`--batch 1,8,32`), each checked like parseNumberFlag. */
export function parseNumberList(flag: string, raw: string, opts: NumberFlagRange): number[] {
  return raw.split(',').map((s) => parseNumberFlag(flag, s.trim(), opts)!);
}
