/**
 * Where the stack's model comes from: SSSD_MODEL / SSSD_TOKENIZER when set;
 * else the development copy beside the repository (../shared/models/stories260K);
 * else a local copy in `.models/` (git-ignored), fetched once from the model's
 * public home (Hugging Face karpathy/tinyllamas) when missing.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CliError } from '../gpu-pool/cli/cli-error';
import { tokenizerBeside } from '../gpu-pool/cli/tokenizer-beside';

export interface ModelFiles {
  model: string;
  tokenizer: string;
  /** Where they were found, for the start-up message. */
  origin: 'configured' | 'shared' | 'local' | 'downloaded';
}

export const defaultModelHome = 'https://huggingface.co/karpathy/tinyllamas/resolve/main';
const defaultFiles = { model: 'stories260K/stories260K.bin', tokenizer: 'stories260K/tok512.bin' } as const;
/**
 * The default files' SHA-256: a download is kept only when it is these bytes
 * (a mirror or proxy that answers 200 with an HTML page was kept, and every
 * later start failed on "not a llama2.c checkpoint").
 */
const defaultSha256 = {
  model: 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696',
  tokenizer: '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312',
} as const;

/** `up` takes the model and tokenizer from its flags or the variables: what is said names both. */
const UP_NAMES = { model: 'SSSD_MODEL (--model)', tokenizer: 'SSSD_TOKENIZER (--tokenizer)' } as const;

export interface LocateOptions {
  repoRoot: string;
  /** The development data (default: `../shared` beside the repository); `up` passes SSSD_SHARED_DIR's. */
  sharedDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Base URL of the public copy (tests point it at an unreachable address). */
  modelHome?: string;
  fetchImpl?: typeof fetch;
  log?: (line: string) => void;
}

async function download(url: string, file: string, sha256: string, fetchImpl: typeof fetch): Promise<void> {
  // The URL and the cause in what is said: "fetch failed" alone named neither the file nor why (a DNS failure, a refused connection).
  const res = await fetchImpl(url, { signal: AbortSignal.timeout(60_000) }).catch((err: Error) => {
    throw new Error(`${url}: ${err.cause instanceof Error ? err.cause.message : err.message}`);
  });
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const got = createHash('sha256').update(bytes).digest('hex');
  if (got !== sha256) throw new Error(`${url} served ${bytes.length} bytes that are not the file (SHA-256 ${got.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…); not kept`);
  mkdirSync(path.dirname(file), { recursive: true });
  // Write beside and rename so an interrupted download never looks complete.
  writeFileSync(`${file}.part`, bytes);
  renameSync(`${file}.part`, file);
}

/** The same file, however named (a relative path, a link). */
function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

export async function locateModel(opts: LocateOptions): Promise<ModelFiles> {
  const env = opts.env ?? process.env;
  const shared = path.join(opts.sharedDir ?? path.resolve(opts.repoRoot, '..', 'shared'), 'models');
  const local = path.join(opts.repoRoot, '.models');
  if (env.SSSD_MODEL) {
    const model = path.resolve(env.SSSD_MODEL);
    if (!existsSync(model)) throw new CliError(`SSSD_MODEL (--model) points at ${model}, which does not exist.`);
    const tokenizer = env.SSSD_TOKENIZER ? path.resolve(env.SSSD_TOKENIZER) : tokenizerBeside(model, UP_NAMES);
    if (!existsSync(tokenizer)) {
      throw new CliError(`No tokenizer found for SSSD_MODEL (--model) at ${tokenizer}; set SSSD_TOKENIZER (--tokenizer) to the model's tokenizer file.`);
    }
    // The default model named by its path is still the default model: its datastore is built and used.
    for (const [home, origin] of [[shared, 'shared'], [local, 'local']] as const) {
      if (sameFile(model, path.join(home, defaultFiles.model)) && sameFile(tokenizer, path.join(home, defaultFiles.tokenizer))) return { model, tokenizer, origin };
    }
    return { model, tokenizer, origin: 'configured' };
  }
  // A tokenizer alone would be dropped for the default model's own: say so rather than serve something else.
  if (env.SSSD_TOKENIZER) throw new CliError('SSSD_TOKENIZER (--tokenizer) is set without SSSD_MODEL (--model): give the model it belongs to as well.');
  const sharedModel = path.join(shared, defaultFiles.model);
  const sharedTokenizer = path.join(shared, defaultFiles.tokenizer);
  if (existsSync(sharedModel) && existsSync(sharedTokenizer)) return { model: sharedModel, tokenizer: sharedTokenizer, origin: 'shared' };

  const localModel = path.join(local, defaultFiles.model);
  const localTokenizer = path.join(local, defaultFiles.tokenizer);
  // A copy that is not the file (kept before downloads were checked, or changed since) is fetched again, not served or
  // failed on at every start; it is left as it is until a good one replaces it (a failed fetch must not lose it).
  const good = (file: string, sha256: string): boolean => {
    if (!existsSync(file)) return false;
    if (createHash('sha256').update(readFileSync(file)).digest('hex') === sha256) return true;
    opts.log?.(`${file} is not the default model's file (its SHA-256 differs); fetching the file`);
    return false;
  };
  const modelGood = good(localModel, defaultSha256.model);
  const tokenizerGood = good(localTokenizer, defaultSha256.tokenizer);
  if (modelGood && tokenizerGood) return { model: localModel, tokenizer: localTokenizer, origin: 'local' };

  const home = (opts.modelHome ?? env.SSSD_MODEL_HOME ?? defaultModelHome).replace(/\/+$/, '');
  const fetchImpl = opts.fetchImpl ?? fetch;
  opts.log?.(`fetching the default model stories260K from ${home} into ${local} (once)`);
  try {
    if (!modelGood) await download(`${home}/${defaultFiles.model}`, localModel, defaultSha256.model, fetchImpl);
    if (!tokenizerGood) await download(`${home}/${defaultFiles.tokenizer}`, localTokenizer, defaultSha256.tokenizer, fetchImpl);
  } catch (err) {
    throw new CliError(
      [
        `No model configured and the default model could not be fetched from ${home} (${err instanceof Error ? err.message : String(err)}).`,
        'Either set SSSD_MODEL (and SSSD_TOKENIZER) to a llama2.c checkpoint and its tokenizer,',
        `or SSSD_MODEL_HOME to a mirror serving ${defaultFiles.model} and ${defaultFiles.tokenizer} (what the files are checked against: their SHA-256),`,
        `or place stories260K.bin and tok512.bin in ${path.join(local, 'stories260K')} (they must be those files: their SHA-256 is checked).`,
      ].join('\n'),
    );
  }
  return { model: localModel, tokenizer: localTokenizer, origin: 'downloaded' };
}
