/** `--pool URL`, as the commands that talk to a running pool take it: a URL without its trailing slash, or a one-line CliError. */
import { CliError } from './cli-error';

export function parsePoolUrl(raw: string): string {
  try {
    return new URL(raw).toString().replace(/\/$/, '');
  } catch {
    throw new CliError(`--pool must be a URL, not "${raw}"`);
  }
}
