// Greedy generation through the ONNX graph reproduces llama2.c's run.c token for token.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { generate } from '../../../gpu-pool/runtime/generate';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();

interface Fixture { prompt: string; prompt_ids: number[]; output_ids: number[] }
const readFixtures = (file: string): Fixture[] =>
  readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Fixture);

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'sssd-graphs-test-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.each(['stories260K', 'llama2xs', 'babyllama105'] as const)('greedy fixtures of %s', (name) => {
  it('reproduces every fixture in one batched generate call', async () => {
    const runner = await ModelRunner.create(await loadModel(models[name].checkpoint), { cacheDir });
    const fixtures = readFixtures(models[name].fixtures);
    const results = await generate(
      runner,
      fixtures.map((f) => ({ promptIds: f.prompt_ids, maxTokens: f.output_ids.length })),
    );
    fixtures.forEach((f, i) => {
      expect(results[i].outputIds).toEqual(f.output_ids);
      const ended = f.output_ids[f.output_ids.length - 1] === 1;
      expect(results[i].finishReason).toBe(ended ? 'stop' : 'length');
    });
    await runner.dispose();
  });
});
