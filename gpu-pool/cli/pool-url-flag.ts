/** A service's base URL flag (`--pool`, `--edge`): an http(s) URL without its trailing slash, or a one-line CliError. */
import { CliError } from './cli-error';

export function parseUrlFlag(flag: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`${flag} must be a URL, not "${raw}"`);
  }
  // fetch takes no other scheme: `ftp://x` was said as "cannot reach ftp://x/v1/info: fetch failed" (review h166).
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`${flag} must be an http:// or https:// URL, not "${raw}"`);
  return url.toString().replace(/\/$/, '');
}

/** `--pool URL`, as the commands that talk to a running pool take it. */
export function parsePoolUrl(raw: string): string {
  return parseUrlFlag('--pool', raw);
}
