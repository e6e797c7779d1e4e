/**
 * An error whose message is meant for the person at the terminal: the CLI
 * prints it without a stack trace and exits non-zero. Throw it for bad input
 * (missing files, wrong formats, bad flags), never for bugs.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
