import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { calibrate, describeCalibration, type Calibration } from '../../../gpu-pool/budget/calibration';
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
    // The host as loaded as when it measured (a busy host's curve is measured again only on a quiet one).
    const again = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir, hostLoad: () => first.load });
    expect(again.fromCache).toBe(true);
    expect(again.file).toBe(first.file);
    expect(again.model.coefficients).toEqual(first.model.coefficients);
    // A file that parses but holds no measured steps, or times below zero: measured again and rewritten, not fitted.
    const good = readFileSync(first.file, 'utf8');
    const negative = (JSON.parse(good) as { samples: Array<{ ms: number }> }).samples.map((x) => ({ ...x, ms: -x.ms }));
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
    expect((await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: dir, threads: 1, hostLoad: () => first.load })).file).toBe(first.file);
    // A folder it cannot write (here under a file, which even root cannot make one in): measured and used, said why not kept.
    const blocker = path.join(dir, 'a-file');
    writeFileSync(blocker, '');
    const unkept = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir: path.join(blocker, 'calibration'), maxBatchTokens: 16 });
    expect(unkept.fromCache).toBe(false);
    expect(unkept.model.stepMs(1, 1, 1, 64)).toBeGreaterThan(0);
    expect(unkept.notCached).toMatch(/ENOTDIR/);
    expect(first.notCached).toBeUndefined();
  }, 60_000);

  it("says, beside the fitted figures, when a cached curve was measured and how loaded the host was then (review h191: a busy host's curve was reused at every start)", async () => {
    const model = await loadModel(models.stories260K.checkpoint);
    const runner = await ModelRunner.create(model);
    const cacheDir = path.join(dir, 'aged');
    const before = Date.now();
    const first = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, maxBatchTokens: 16 });
    expect(first.measuredAt!.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(first.load).toEqual({ average: expect.any(Number), cores: os.cpus().length });
    expect(describeCalibration(first, 2_345)).toBe(`calibrated in 2.3 s at load ${first.load!.average.toFixed(2)} on ${os.cpus().length} cores`);
    // Kept in the file, and read back at the next start.
    const again = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, hostLoad: () => first.load });
    expect([again.fromCache, again.measuredAt?.toISOString(), again.load]).toEqual([true, first.measuredAt!.toISOString(), first.load]);
    const threeHoursOn = first.measuredAt!.getTime() + 3 * 3600_000 + 5_000;
    expect(describeCalibration(again, null, threeHoursOn)).toBe(`calibration cached, measured 3 h ago at load ${first.load!.average.toFixed(2)} on ${os.cpus().length} cores${first.load!.average >= os.cpus().length ? '; the host was busy then, so the costs may be too high: it is measured again at a start on a quiet host, or --recalibrate' : ''}`);
    // A file from before the record (the samples alone): its age is the file's, its load unknown.
    writeFileSync(first.file, JSON.stringify(first.samples));
    const modified = new Date(Date.now() - 2 * 86400_000 - 60_000);
    utimesSync(first.file, modified, modified);
    const old = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir });
    expect([old.fromCache, old.load]).toEqual([true, null]);
    expect(Math.abs(old.measuredAt!.getTime() - modified.getTime())).toBeLessThan(1000);
    expect(describeCalibration(old, null)).toBe('calibration cached, measured 2 days ago');
    // Measured at a load of a core or more each: said to be likely too dear, with what to do.
    const busy: Calibration = { ...again, load: { average: 2.5, cores: 2 } };
    expect(describeCalibration(busy, null, threeHoursOn)).toMatch(/at load 2\.50 on 2 cores; the host was busy then, so the costs may be too high: it is measured again at a start on a quiet host, or --recalibrate$/);
  }, 60_000);

  it('measures a busy host\'s cached curve again at a start on a quiet host, and keeps it at a start beside the same load', async () => {
    const model = await loadModel(models.stories260K.checkpoint);
    const runner = await ModelRunner.create(model);
    const cacheDir = path.join(dir, 'busy');
    const cores = os.cpus().length;
    const busyLoad = { average: cores * 1.5, cores };
    const first = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, maxBatchTokens: 16, hostLoad: () => busyLoad });
    expect(first.load).toEqual(busyLoad);
    // Restarted beside the same neighbours (or only a little quieter): the cached curve, said to be too dear.
    for (const average of [busyLoad.average, cores * 0.6]) {
      const kept = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, maxBatchTokens: 16, hostLoad: () => ({ average, cores }) });
      expect([kept.fromCache, kept.replacedBusy], String(average)).toEqual([true, undefined]);
      expect(describeCalibration(kept, null)).toMatch(/the host was busy then/);
    }
    // On a quiet host: measured again, the file rewritten with the quiet load, and the log says why.
    const quiet = { average: cores * 0.2, cores };
    const remeasured = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, maxBatchTokens: 16, hostLoad: () => quiet });
    expect([remeasured.fromCache, remeasured.replacedBusy, remeasured.load]).toEqual([false, busyLoad, quiet]);
    expect(describeCalibration(remeasured, 1_500)).toBe(`calibrated in 1.5 s at load ${quiet.average.toFixed(2)} on ${cores} cores (the cached curve was measured at load ${busyLoad.average.toFixed(2)} on ${cores} cores, too dear; the host is quiet now)`);
    expect((JSON.parse(readFileSync(first.file, 'utf8')) as { load: unknown }).load).toEqual(quiet);
    // The quiet curve is the one the next start reads, however loaded the host is then.
    const next = await calibrate(runner, { modelSha256: model.sha256, executionProvider: 'cpu', cacheDir, maxBatchTokens: 16, hostLoad: () => busyLoad });
    expect([next.fromCache, next.load]).toEqual([true, quiet]);
  }, 60_000);
});
