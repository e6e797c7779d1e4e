/**
 * Where the stack's model comes from: SSSD_MODEL / SSSD_TOKENIZER when set;
 * else the development copy beside the repository (../shared/models/stories260K);
 * else a local copy in `.models/` (git-ignored), fetched once from the model's
 * public home (Hugging Face karpathy/tinyllamas) when missing.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CliError } from '../gpu-pool/cli/cli-error';

export interface ModelFiles {
  model: string;
  tokenizer: string;
  /** Where they were found, for the start-up message. */
  origin: 'configured' | 'shared' | 'local' | 'downloaded';
}

export const defaultModelHome = 'https://huggingface.co/karpathy/tinyllamas/resolve/main';
const defaultFiles = { model: 'stories260K/stories260K.bin', tokenizer: 'stories260K/tok512.bin' } as const;

export interface LocateOptions {
  repoRoot: string;
  env?: NodeJS.ProcessEnv;
  /** Base URL of the public copy (tests point it at an unreachable address). */
  modelHome?: string;
  fetchImpl?: typeof fetch;
  log?: (line: string) => void;
}

async function download(url: string, file: string, fetchImpl: typeof fetch): Promise<void> {
  const res = await fetchImpl(url, { signal: AbortSignal.timeout(60_000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  mkdirSync(path.dirname(file), { recursive: true });
  // Write beside and rename so an interrupted download never looks complete.
  writeFileSync(`${file}.part`, bytes);
  renameSync(`${file}.part`, file);
}

export async function locateModel(opts: LocateOptions): Promise<ModelFiles> {
  const env = opts.env ?? process.env;
  if (env.SSSD_MODEL) {
    const model = path.resolve(env.SSSD_MODEL);
    if (!existsSync(model)) throw new CliError(`SSSD_MODEL (--model) points at ${model}, which does not exist.`);
    const tokenizer = env.SSSD_TOKENIZER ? path.resolve(env.SSSD_TOKENIZER) : path.join(path.dirname(model), 'tok512.bin');
    if (!existsSync(tokenizer)) {
      throw new CliError(`No tokenizer found for SSSD_MODEL (--model) at ${tokenizer}; set SSSD_TOKENIZER (--tokenizer) to the model's tokenizer file.`);
    }
    return { model, tokenizer, origin: 'configured' };
  }
  // A tokenizer alone would be dropped for the default model's own: say so rather than serve something else.
  if (env.SSSD_TOKENIZER) throw new CliError('SSSD_TOKENIZER (--tokenizer) is set without SSSD_MODEL (--model): give the model it belongs to as well.');
  const shared = path.resolve(opts.repoRoot, '..', 'shared', 'models');
  const sharedModel = path.join(shared, defaultFiles.model);
  const sharedTokenizer = path.join(shared, defaultFiles.tokenizer);
  if (existsSync(sharedModel) && existsSync(sharedTokenizer)) return { model: sharedModel, tokenizer: sharedTokenizer, origin: 'shared' };

  const local = path.join(opts.repoRoot, '.models');
  const localModel = path.join(local, defaultFiles.model);
  const localTokenizer = path.join(local, defaultFiles.tokenizer);
  if (existsSync(localModel) && existsSync(localTokenizer)) return { model: localModel, tokenizer: localTokenizer, origin: 'local' };

  const home = (opts.modelHome ?? env.SSSD_MODEL_HOME ?? defaultModelHome).replace(/\/+$/, '');
  const fetchImpl = opts.fetchImpl ?? fetch;
  opts.log?.(`fetching the default model stories260K from ${home} into ${local} (once)`);
  try {
    if (!existsSync(localModel)) await download(`${home}/${defaultFiles.model}`, localModel, fetchImpl);
    if (!existsSync(localTokenizer)) await download(`${home}/${defaultFiles.tokenizer}`, localTokenizer, fetchImpl);
  } catch (err) {
    throw new CliError(
      [
        `No model configured and the default model could not be fetched from ${home} (${err instanceof Error ? err.message : String(err)}).`,
        'Either set SSSD_MODEL (and SSSD_TOKENIZER) to a llama2.c checkpoint and its tokenizer,',
        `or place stories260K.bin and tok512.bin in ${path.join(local, 'stories260K')}.`,
      ].join('\n'),
    );
  }
  return { model: localModel, tokenizer: localTokenizer, origin: 'downloaded' };
}
