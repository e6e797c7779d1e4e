/**
 * The tokenizer beside a model, found one way for `sssd up` (launcher/model-locator.ts) and for the commands that take
 * --model and --tokenizer (`generate`, `pool`, `datastore build`): `generate` said --tokenizer was required for a
 * `.bin` model that `up` served with the tok512.bin beside it (review h141). SSSD_TOKENIZER comes first for all of
 * them, as the README says (review h185).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { CliError } from './cli-error';

/** How the model and tokenizer are named in what is said: the flags, or `up`'s variables and flags. */
export interface ModelSettingNames {
  model: string;
  tokenizer: string;
}

const FLAG_NAMES: ModelSettingNames = { model: '--model', tokenizer: '--tokenizer (or SSSD_TOKENIZER)' };

/** A llama2.c tokenizer's file name: tok512.bin, tok105.bin, tokenizer.bin. */
const TOKENIZER_FILE = /^(tok.*|tokenizer)\.bin$/;

/**
 * The tokenizer beside an existing model: a Hugging Face directory's
 * `tokenizer.json`; for a llama2.c file, the one `tok*.bin` or
 * `tokenizer.bin` in its folder (stories260K's tok512.bin, babyllama105's
 * tok105.bin). None, or several, is an error that says what to pass.
 */
export function tokenizerBeside(model: string, names: ModelSettingNames = FLAG_NAMES): string {
  if (statSync(model).isDirectory()) {
    if (!existsSync(path.join(model, 'config.json'))) {
      const bins = readdirSync(model).filter((f) => f.endsWith('.bin') && !TOKENIZER_FILE.test(f));
      throw new CliError(
        `${names.model} is the folder ${model}, which is not a Hugging Face model (no config.json); give the checkpoint file${bins.length > 0 ? ` (one of: ${bins.join(', ')})` : ''} and, if need be, ${names.tokenizer}.`,
      );
    }
    const tokenizer = path.join(model, 'tokenizer.json');
    if (!existsSync(tokenizer)) throw new CliError(`No tokenizer.json in ${model}; set ${names.tokenizer} to the model's tokenizer file.`);
    return tokenizer;
  }
  const folder = path.dirname(model);
  // A tokenizer given as the model: said as such, not as "no tokenizer beside it" (the folder holds it, and the checkpoint).
  if (TOKENIZER_FILE.test(path.basename(model))) {
    const checkpoints = readdirSync(folder).filter((f) => f.endsWith('.bin') && !TOKENIZER_FILE.test(f));
    throw new CliError(`${names.model} ${model} is named as a tokenizer is; give the checkpoint${checkpoints.length > 0 ? ` (one of: ${checkpoints.join(', ')})` : ''}.`);
  }
  const found = readdirSync(folder).filter((f) => f !== path.basename(model) && TOKENIZER_FILE.test(f));
  if (found.length === 1) return path.join(folder, found[0]);
  throw new CliError(
    found.length === 0
      ? `No tokenizer found beside ${names.model} ${model} (no tok*.bin or tokenizer.bin in ${folder}); set ${names.tokenizer} to the model's tokenizer file.`
      : `Several tokenizers beside ${names.model} ${model} (${found.join(', ')}); set ${names.tokenizer} to the model's.`,
  );
}

/** --tokenizer's default, as the commands' help says it. */
export const TOKENIZER_DEFAULT_HELP = "default: SSSD_TOKENIZER, else the one beside --model, as `sssd up` finds it: a Hugging Face folder's tokenizer.json, or the one tok*.bin or tokenizer.bin in a .bin checkpoint's folder";
