// generate(): sampling is reproducible per seed, and a sequence that reaches
// the model's context ends with finish reason context_length.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { generate } from '../../../gpu-pool/runtime/generate';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe('generate', () => {
  let runner: ModelRunner;
  beforeAll(async () => {
    runner = await ModelRunner.create(await loadModel(models.llama2xs.checkpoint), { cacheDir });
  });
  afterAll(async () => runner?.dispose());

  it('samples the same tokens for the same seed, in any batch, and others for another seed', async () => {
    const req = { promptIds: [1, 403, 407], maxTokens: 40, temperature: 1, topP: 0.95, topK: 40 };
    const [a, b, c] = await generate(runner, [{ ...req, seed: 5 }, { ...req, seed: 5 }, { ...req, seed: 6 }]);
    const [alone] = await generate(runner, [{ ...req, seed: 5 }]);
    expect(a.outputIds).toEqual(b.outputIds);
    expect(alone.outputIds).toEqual(a.outputIds);
    expect(c.outputIds).not.toEqual(a.outputIds);
  });

  it('stops at the context length with the tokens run.c produced', async () => {
    const fixture = JSON.parse(readFileSync(models.llama2xs.fixtures, 'utf8').split('\n')[0]) as { prompt_ids: number[]; output_ids: number[] };
    const all = [...fixture.prompt_ids, ...fixture.output_ids]; // 257 ids: positions 0..255 plus the last prediction
    expect(all).toHaveLength(257);
    const [r] = await generate(runner, [{ promptIds: all.slice(0, 250), maxTokens: 100 }]);
    expect(r.outputIds).toEqual(all.slice(250));
    expect(r.finishReason).toBe('context_length');
  });

  it('rejects prompts it cannot run', async () => {
    await expect(generate(runner, [{ promptIds: [], maxTokens: 3 }])).rejects.toThrow(/at least one token/);
    await expect(generate(runner, [{ promptIds: new Array(300).fill(5), maxTokens: 3 }])).rejects.toThrow(/context length/);
    await expect(generate(runner, [{ promptIds: [1, 512], maxTokens: 3 }])).rejects.toThrow(/vocabulary/);
  });
});
