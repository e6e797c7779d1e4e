/**
 * The name a pool serves its model under (`--served-model-name`, vLLM's
 * flag, or SSSD_MODEL_NAME): the `model` clients send and every reply
 * carries, and the name edges and pools match generations by. By default
 * the checkpoint's file (or folder) name, so the same weights loaded from
 * another path were another model (review h191: a rolling deploy into a
 * release folder renamed the model under its users and halved the fleet);
 * a name the operator sets stays across paths.
 */
import { CliError } from './cli-error';

/** Longest name taken: a Hugging Face id (`org/name`, 96 characters each) fits, a pasted paragraph does not. */
export const MAX_SERVED_MODEL_NAME = 128;

/**
 * What a name may hold: letters, digits and `. _ - : / @ +`, starting with a
 * letter or digit. It travels in JSON bodies, URLs' query strings (the demo
 * page), metric labels and log lines; quotes, spaces and control characters
 * there are a client's bug report waiting.
 */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;

/** Why `name` cannot be served, or null where it can; `source` names where it came from. */
export function servedModelNameProblem(name: string, source: string): string | null {
  if (name.length === 0) return `${source} is empty; give the name clients send as "model", or leave it out to serve the checkpoint's file name`;
  if (name.length > MAX_SERVED_MODEL_NAME) return `${source} is ${name.length} characters long; a model name takes ${MAX_SERVED_MODEL_NAME} at most`;
  if (!NAME_PATTERN.test(name)) {
    return `${source} must start with a letter or digit and hold only letters, digits and . _ - : / @ + (as "stories260K" or "org/model-7b" do), not ${JSON.stringify(name.slice(0, 80))}`;
  }
  return null;
}

/**
 * The served name from the flag, else the environment (empty there is unset,
 * as for every SSSD_ variable), else null (the checkpoint's name). A bad one
 * is a CliError (exit 2) before the model loads.
 */
export function servedModelName(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | null {
  const [value, source] = flag !== undefined ? [flag, '--served-model-name'] : env.SSSD_MODEL_NAME ? [env.SSSD_MODEL_NAME, 'SSSD_MODEL_NAME'] : [null, ''];
  if (value === null) return null;
  const problem = servedModelNameProblem(value, source);
  if (problem) throw new CliError(problem);
  return value;
}
