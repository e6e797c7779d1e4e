/**
 * An error whose message is meant for the person at the terminal: the CLI
 * prints it without a stack trace and exits non-zero. Throw it for bad input
 * (missing files, wrong formats, bad flags), never for bugs.
 */
import path from 'node:path';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * Why a file named on the command line could not be read, in words (Node's
 * own were "ENOENT: no such file or directory, open ...", or nothing): `what`
 * names its role ("workload", "corpus").
 */
export function unreadableFile(what: string, file: string, err: unknown): CliError {
  return new CliError(unreadableFileMessage(what, file, err));
}

/**
 * `what` not found at `file`; a relative path also as the absolute one looked
 * at, since a script that changes folder first (or a wrong cwd) makes a bare
 * "model not found: stories260K.bin" a puzzle (review h222).
 */
export function notFoundMessage(what: string, file: string): string {
  return `${what} not found: ${file}${path.isAbsolute(file) ? '' : ` (looked for ${path.resolve(file)})`}`;
}

/** unreadableFile's words, for an error class of another kind (the next-token table's). */
export function unreadableFileMessage(what: string, file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return notFoundMessage(what, file);
  if (code === 'EISDIR') return `${what} ${file} is a folder; name a file`;
  if (code === 'EACCES' || code === 'EPERM') return `${what} ${file} cannot be read: permission denied`;
  return `cannot read ${what} ${file}: ${err instanceof Error ? err.message : String(err)}`;
}
