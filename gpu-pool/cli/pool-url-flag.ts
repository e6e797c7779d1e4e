/** A service's base URL flag (`--pool`, `--edge`): a URL without its trailing slash, or a one-line CliError. */
import { CliError } from './cli-error';

export function parseUrlFlag(flag: string, raw: string): string {
  try {
    return new URL(raw).toString().replace(/\/$/, '');
  } catch {
    throw new CliError(`${flag} must be a URL, not "${raw}"`);
  }
}

/** `--pool URL`, as the commands that talk to a running pool take it. */
export function parsePoolUrl(raw: string): string {
  return parseUrlFlag('--pool', raw);
}
