/**
 * One entry point for every checkpoint format: a file is a llama2.c `.bin`, a
 * directory is a Hugging Face model. The sha256 of the checkpoint bytes
 * identifies the model (graph cache key, /v1/info).
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { ModelConfig } from './model-config';
import type { ModelWeights } from './model-weights';
import { ModelLoadError } from './model-load-error';
import { parseLlama2cCheckpoint } from './llama2c-checkpoint';
import { loadHfCheckpoint } from './hf-checkpoint';

export interface LoadedModel {
  config: ModelConfig;
  weights: ModelWeights;
  /** Hex sha256 of the checkpoint bytes (HF: of config.json then each weights file, in order). */
  sha256: string;
}

export async function loadModel(modelPath: string): Promise<LoadedModel> {
  let info;
  try {
    info = await stat(modelPath);
  } catch {
    throw new ModelLoadError(`model not found: ${modelPath}`);
  }
  if (info.isDirectory()) return loadHfCheckpoint(modelPath);
  const bytes = new Uint8Array(await readFile(modelPath));
  const { config, weights } = parseLlama2cCheckpoint(bytes, modelPath);
  return { config, weights, sha256: createHash('sha256').update(bytes).digest('hex') };
}
