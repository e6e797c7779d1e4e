/**
 * `sssd generate`: plain autoregressive generation from a checkpoint, for
 * checking a model and a tokenizer end to end (the pool serves; this does not).
 *
 * Without --json the prompt and the continuation are streamed to stdout as
 * run.c prints them. With --json one object is printed: prompt_ids (BOS
 * included), output_ids (the eos id, e.g. 1 for llama2.c models, is kept as the
 * last id when the model stopped, so llama2.c fixtures compare directly), text
 * (the continuation only, eos prints nothing), finish_reason, seed (when
 * sampling), usage, timings.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../shared/tokenizer/tokenizer';
import { loadModel, type LoadedModel } from '../model/load-model';
import { generate } from '../runtime/generate';
import { EXECUTION_PROVIDERS, isExecutionProvider, ModelRunner, type ExecutionProviderName } from '../runtime/model-runner';
import { choiceSeed } from '../../shared/sampling/request-seed';
import { CliError, notFoundMessage, unreadableFile } from './cli-error';
import { parseNumberFlag } from './number-flags';
import { tokenizerBeside, TOKENIZER_DEFAULT_HELP } from './tokenizer-beside';
import { modelEnvironmentHelp } from './model-environment-help';

/** Reads and parses a tokenizer file; one-line CliErrors for a missing or unusable file. */
export async function readTokenizerFile(file: string): Promise<Tokenizer> {
  return (await readTokenizerWithHash(file)).tokenizer;
}

/** readTokenizerFile, plus the sha256 of the file's bytes (datastores record which tokenizer built them). */
export async function readTokenizerWithHash(file: string): Promise<{ tokenizer: Tokenizer; sha256: string }> {
  const bytes = await readTokenizerBytes(file);
  try {
    return { tokenizer: loadTokenizer(bytes), sha256: createHash('sha256').update(bytes).digest('hex') };
  } catch (err) {
    throw new CliError(`${file}: not a usable tokenizer (${(err as Error).message})`);
  }
}

/** A tokenizer file's bytes; one-line CliErrors for a missing file, a folder (which file in it), an empty file. */
export async function readTokenizerBytes(file: string): Promise<Uint8Array> {
  if (existsSync(file) && statSync(file).isDirectory()) {
    const inside = path.join(file, 'tokenizer.json');
    throw new CliError(`tokenizer ${file} is a folder; give the file${existsSync(inside) ? ` (${inside})` : ''}`);
  }
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (err) {
    throw unreadableFile('tokenizer', file, err);
  }
  if (bytes.byteLength === 0) throw new CliError(`tokenizer ${file} is empty`);
  return bytes;
}

/**
 * --tokenizer, else SSSD_TOKENIZER, else the one beside the model: the order `sssd up` takes them in (a `.bin`'s
 * tok*.bin, a Hugging Face folder's tokenizer.json).
 */
export function resolveTokenizerPath(modelPath: string, tokenizerPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (tokenizerPath !== undefined) return tokenizerPath;
  // A mistyped --model is said as such, not as a tokenizer missing (review h113).
  if (!existsSync(modelPath)) throw new CliError(notFoundMessage('model', modelPath));
  // Empty is unset, as `up` reads it.
  const fromEnv = env.SSSD_TOKENIZER;
  if (!fromEnv) return tokenizerBeside(modelPath);
  // Named as the variable's: a path left set for `up` and forgotten is no file the user passed here.
  if (!existsSync(fromEnv)) throw new CliError(`SSSD_TOKENIZER points at ${fromEnv}, which does not exist; set it or --tokenizer to the model's tokenizer file, or unset it to take the one beside --model.`);
  return fromEnv;
}

export function checkTokenizerFits(tokenizer: Tokenizer, model: LoadedModel, tokenizerPath: string): void {
  if (tokenizer.vocabSize !== model.config.vocabSize) {
    throw new CliError(
      `tokenizer ${tokenizerPath} has ${tokenizer.vocabSize} tokens but model ${model.config.name} expects ${model.config.vocabSize}`,
    );
  }
}

/** `sssd generate … | head` closes stdout early: end quietly instead of crashing with EPIPE. */
export function exitQuietlyOnBrokenPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

export function parseExecutionProvider(raw: string | undefined): ExecutionProviderName | undefined {
  if (raw === undefined) return undefined;
  if (!isExecutionProvider(raw)) throw new CliError(`--execution-provider must be ${EXECUTION_PROVIDERS.join(', ')}, not "${raw}"`);
  return raw;
}

/**
 * The seeds --seed takes: the integers a number holds exactly. Past them a seed was rounded, used and echoed as
 * another (9223372036854775807 as 9223372036854776000); the pool takes seeds to 2^53 - 1, and the API reads a
 * request's seed exactly within this span too, so a seed given here samples what it samples there.
 */
export const SEED_LIMIT = Number.MAX_SAFE_INTEGER;

interface GenerateFlags {
  model: string;
  tokenizer?: string;
  prompt: string;
  maxTokens: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  seed?: string;
  threads?: string;
  executionProvider?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('generate text autoregressively from a checkpoint (llama2.c .bin or Hugging Face directory)')
    .requiredOption('--model <path>', 'checkpoint: llama2.c .bin file or Hugging Face directory')
    .option('--tokenizer <path>', `tokenizer: llama2.c tokenizer .bin or tokenizer.json (${TOKENIZER_DEFAULT_HELP})`)
    .option('--prompt <text>', 'prompt text (BOS is prepended)', '')
    .option('--max-tokens <n>', 'maximum number of new tokens', '256')
    .option('--temperature <t>', 'sampling temperature; 0 = greedy (default 0)')
    .option('--top-p <p>', 'nucleus sampling mass in (0, 1] (default 1)')
    .option('--top-k <k>', 'keep the k most likely tokens; 0 = all (default 0)')
    .option('--seed <s>', `random seed for sampling, an integer from -${SEED_LIMIT} to ${SEED_LIMIT} (2^53 - 1), negative ones as the API takes them (default: time)`)
    .option('--threads <n>', 'onnxruntime intra-op threads (default $SSSD_THREADS or 1)')
    .option('--execution-provider <name>', 'cpu, cuda or webgpu (default cpu, or $SSSD_EXECUTION_PROVIDER)')
    .option('--json', 'print one JSON object instead of streaming text')
    .addHelpText('after', `\nEnvironment:\n${modelEnvironmentHelp()}\n`)
    .action(async (flags: GenerateFlags) => {
      exitQuietlyOnBrokenPipe();
      await runGenerate(flags);
    });
}

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const maxTokens = parseNumberFlag('--max-tokens', flags.maxTokens, { integer: true, min: 1 })!;
  const temperature = parseNumberFlag('--temperature', flags.temperature, { min: 0, max: 100 }) ?? 0;
  const topP = parseNumberFlag('--top-p', flags.topP, { min: 0, max: 1, minExclusive: true }) ?? 1;
  const topK = parseNumberFlag('--top-k', flags.topK, { integer: true, min: 0 }) ?? 0;
  // Negative ones included, mapped as the API maps a request's (request-seed.ts); within ±SEED_LIMIT only, used as given.
  const seed = parseNumberFlag('--seed', flags.seed, { integer: true, min: -SEED_LIMIT, max: SEED_LIMIT, why: '2^53 - 1: past it, seeds are rounded to others as JavaScript reads them' }) ?? Date.now();
  const threads = parseNumberFlag('--threads', flags.threads, { integer: true, min: 1, max: 256 });
  const executionProvider = parseExecutionProvider(flags.executionProvider);

  const t0 = performance.now();
  const model = await loadModel(flags.model);
  const tokenizerPath = resolveTokenizerPath(flags.model, flags.tokenizer);
  const tokenizer = await readTokenizerFile(tokenizerPath);
  checkTokenizerFits(tokenizer, model, tokenizerPath);
  const promptIds = tokenizer.encode(flags.prompt, { bos: true });
  const { contextLength } = model.config;
  if (promptIds.length > contextLength) {
    throw new CliError(`the prompt is ${promptIds.length} tokens long, more than the model's context of ${contextLength}`);
  }
  const runner = await ModelRunner.create(model, { executionProvider, threads });
  const t1 = performance.now();

  const decoder = tokenizer.createDecoder({ previousId: promptIds[promptIds.length - 1] });
  let text = '';
  let firstTokenAt = 0;
  if (!flags.json) process.stdout.write(tokenizer.decode(promptIds));
  const [result] = await generate(runner, [{ promptIds, maxTokens, temperature, topP, topK, seed: choiceSeed(seed, 0) }], {
    onToken: (_i, id) => {
      if (firstTokenAt === 0) firstTokenAt = performance.now();
      const piece = decoder.push(id);
      text += piece;
      if (!flags.json && piece) process.stdout.write(piece);
    },
  });
  const tail = decoder.flush();
  text += tail;
  const t2 = performance.now();
  await runner.dispose();

  if (!flags.json) {
    process.stdout.write(`${tail}\n`);
    const n = result.outputIds.length;
    const decodeS = (t2 - firstTokenAt) / 1000;
    process.stderr.write(
      `[${n} tokens, ${result.finishReason}; ${n > 1 && decodeS > 0 ? ((n - 1) / decodeS).toFixed(1) : '-'} tok/s decode]\n`,
    );
    return;
  }
  const out = {
    model: model.config.name,
    prompt_ids: promptIds,
    output_ids: result.outputIds,
    text,
    finish_reason: result.finishReason,
    // The seed actually used, so a sampled run can be repeated.
    ...(temperature > 0 ? { seed } : {}),
    usage: { prompt_tokens: promptIds.length, completion_tokens: result.outputIds.length },
    timings: {
      load_ms: Math.round(t1 - t0),
      first_token_ms: Math.round(firstTokenAt - t1),
      total_ms: Math.round(t2 - t1),
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
