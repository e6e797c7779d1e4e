import { CliError } from '../cli/cli-error';

/** A checkpoint that cannot be used (missing, truncated, wrong format): a user's mistake, printed without a stack. */
export class ModelLoadError extends CliError {
  constructor(message: string) {
    super(message);
    this.name = 'ModelLoadError';
  }
}
