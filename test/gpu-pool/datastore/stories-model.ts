/**
 * The real stories260K model and tokenizer, loaded once per test file, and a
 * scratch folder removed afterwards: what the datastore builder's tests run
 * the model's continuations and distributions with.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../../shared/tokenizer/tokenizer';
import { models, requireSharedData } from '../../support/shared-data';

export interface StoriesModel {
  tokenizer: Tokenizer;
  runner: ModelRunner;
  /** A scratch folder for this file's corpora and datastores. */
  dir: string;
}

/** Registers the file's beforeAll / afterAll; read the fields inside tests (they are set by then). */
export function useStoriesModel(scratchPrefix: string): StoriesModel {
  const m = {} as StoriesModel;
  beforeAll(async () => {
    requireSharedData();
    m.tokenizer = loadTokenizer(new Uint8Array(await readFile(models.stories260K.tokenizer)));
    m.runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
    m.dir = await mkdtemp(path.join(tmpdir(), scratchPrefix));
  });
  afterAll(async () => {
    await m.runner?.dispose();
    if (m.dir) await rm(m.dir, { recursive: true, force: true });
  });
  return m;
}
