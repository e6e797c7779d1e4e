/**
 * One entry point for every checkpoint format: a file is a llama2.c `.bin`, a
 * directory is a Hugging Face model. The sha256 of the checkpoint bytes
 * identifies the model (graph cache key, /v1/info).
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ModelConfig } from './model-config';
import { firstNonFiniteWeight, type ModelWeights } from './model-weights';
import { unreadableFileMessage } from '../cli/cli-error';
import { ModelLoadError } from './model-load-error';
import { checkLlama2cFile, parseLlama2cCheckpoint } from './llama2c-checkpoint';
import { loadHfCheckpoint } from './hf-checkpoint';

export interface LoadedModel {
  config: ModelConfig;
  weights: ModelWeights;
  /** Hex sha256 of the checkpoint bytes (HF: of config.json then each weights file, in order). */
  sha256: string;
  /** When the checkpoint was written (Unix seconds; HF: config.json's time), as an OpenAI model's `created`. */
  createdAt: number;
}

/** Node reads at most this much in one readFile. */
const LLAMA2C_MAX_BYTES = 2 ** 31 - 1;

/** The checkpoint's file or folder; a missing or unreadable one, or a llama2.c file too large to read, is said in words. */
async function statModel(modelPath: string): Promise<Stats> {
  let info;
  try {
    info = await stat(modelPath);
  } catch (err) {
    throw new ModelLoadError(unreadableFileMessage('model', modelPath, err));
  }
  if (!info.isDirectory() && info.size > LLAMA2C_MAX_BYTES) {
    throw new ModelLoadError(`${modelPath}: ${(info.size / 2 ** 30).toFixed(1)} GiB, past the 2 GiB a llama2.c checkpoint is read in at once; give a Hugging Face folder (safetensors, read in chunks) instead`);
  }
  return info;
}

/**
 * What loadModel would refuse in a llama2.c file's header or size (missing,
 * unreadable, truncated, not a checkpoint), found without reading its weights,
 * the path named whole: a launcher says it before it starts anything. A
 * Hugging Face folder is left to the load.
 */
export async function checkModelFile(modelPath: string): Promise<void> {
  if ((await statModel(modelPath)).isDirectory()) return;
  try {
    await checkLlama2cFile(modelPath);
  } catch (err) {
    if (err instanceof ModelLoadError) throw err;
    throw new ModelLoadError(unreadableFileMessage('model', modelPath, err));
  }
}

export async function loadModel(modelPath: string): Promise<LoadedModel> {
  const info = await statModel(modelPath);
  const model = info.isDirectory()
    ? { ...(await loadHfCheckpoint(modelPath)), createdAt: unixSeconds((await stat(path.join(modelPath, 'config.json'))).mtimeMs) }
    : { ...llama2cModel(await readModelFile(modelPath), modelPath), createdAt: unixSeconds(info.mtimeMs) };
  const bad = firstNonFiniteWeight(model.weights);
  if (bad) throw new ModelLoadError(`${modelPath}: weight ${bad.tensor}[${bad.index}] is ${bad.value}, not a finite number: the checkpoint is corrupt (every logit would be NaN)`);
  return model;
}

/** The checkpoint's bytes; an unreadable file (permissions) is said in words, not as a stack. */
async function readModelFile(modelPath: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(modelPath));
  } catch (err) {
    throw new ModelLoadError(unreadableFileMessage('model', modelPath, err));
  }
}

function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function llama2cModel(bytes: Uint8Array, modelPath: string): Omit<LoadedModel, 'createdAt'> {
  const { config, weights } = parseLlama2cCheckpoint(bytes, modelPath);
  return { config, weights, sha256: createHash('sha256').update(bytes).digest('hex') };
}
