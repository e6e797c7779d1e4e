import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { calibrate } from '../../../gpu-pool/budget/calibration';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { models } from '../../support/shared-data';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sssd-calibration-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('start-up calibration with the real runner', () => {
  it('measures a cost curve in seconds, caches it per model and machine', async () => {
    const model = await loadModel(models.stories260K.checkpoint);
    const runner = await ModelRunner.create(model);
    const t0 = performance.now();
    const first = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir });
    expect(performance.now() - t0).toBeLessThan(20_000);
    expect(first.fromCache).toBe(false);
    const m = first.model;
    // A bigger batch or a bigger tree never looks cheaper; a step is never free.
    expect(m.stepMs(1, 1, 1, 64)).toBeGreaterThan(0);
    expect(m.stepMs(16, 1, 16, 64)).toBeGreaterThanOrEqual(m.stepMs(1, 1, 1, 64));
    expect(m.stepMs(16, 8, 128, 64)).toBeGreaterThanOrEqual(m.stepMs(16, 1, 16, 64));
    const again = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir });
    expect(again.fromCache).toBe(true);
    expect(again.file).toBe(first.file);
    expect(again.model.coefficients).toEqual(first.model.coefficients);
    const otherEp = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cuda', cacheDir: dir, maxBatchTokens: 16 });
    expect(otherEp.file).not.toBe(first.file);
  }, 60_000);
});
