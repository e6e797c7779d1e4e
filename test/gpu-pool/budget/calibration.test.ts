import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    // A file that parses but holds no measured steps, or times below zero: measured again and rewritten, not fitted.
    const good = readFileSync(first.file, 'utf8');
    const negative = (JSON.parse(good) as Array<{ ms: number }>).map((x) => ({ ...x, ms: -x.ms }));
    for (const bad of ['[{},{},{},{},{}]', '[1,2,3,4,5]', JSON.stringify(negative)]) {
      writeFileSync(first.file, bad);
      const remeasured = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir, maxBatchTokens: 16 });
      expect(remeasured.fromCache, bad.slice(0, 20)).toBe(false);
      expect(remeasured.model.stepMs(1, 1, 1, 64)).toBeGreaterThan(0);
      expect(JSON.parse(readFileSync(first.file, 'utf8'))).not.toEqual(JSON.parse(bad));
    }
    writeFileSync(first.file, good);
    const otherEp = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cuda', cacheDir: dir, maxBatchTokens: 16 });
    expect(otherEp.file).not.toBe(first.file);
    // Another intra-op thread count is another cost curve; 1, the default, keeps the file's name.
    const twoThreads = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir, maxBatchTokens: 16, threads: 2 });
    expect(twoThreads.fromCache).toBe(false);
    expect(twoThreads.file).not.toBe(first.file);
    expect((await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir, threads: 1 })).file).toBe(first.file);
    // A folder it cannot write (here under a file, which even root cannot make one in): measured and used, said why not kept.
    const blocker = path.join(dir, 'a-file');
    writeFileSync(blocker, '');
    const unkept = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: path.join(blocker, 'calibration'), maxBatchTokens: 16 });
    expect(unkept.fromCache).toBe(false);
    expect(unkept.model.stepMs(1, 1, 1, 64)).toBeGreaterThan(0);
    expect(unkept.notCached).toMatch(/ENOTDIR/);
    expect(first.notCached).toBeUndefined();
  }, 60_000);
});
