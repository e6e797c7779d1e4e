// `sssd bench-decode` runs end to end and reports one figure per batch size.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { models, repoRoot, requireSharedData } from '../../support/shared-data';
import { sssdNodeArgs } from '../../support/compiled-cli';

requireSharedData();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sssd-bench-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `sssd ARGS`: as compiled once (compiled-cli.ts), bin/sssd.mjs itself where `entry` says so (the first of the file's five starts). */
function sssd(args: string[], entry: string[] = sssdNodeArgs()): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...entry, ...args], { cwd: repoRoot, env: { ...process.env, SSSD_CACHE_DIR: tmp } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

describe('sssd bench-decode', () => {
  it('prints decode tokens/s for each batch size as JSON', async () => {
    const r = await sssd(['bench-decode', '--model', models.stories260K.checkpoint, '--batch', '1,4', '--tokens', '8', '--json'], [path.join(repoRoot, 'bin/sssd.mjs')]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { model: string; results: Array<{ batch: number; steps: number; tokens: number; tokensPerSecond: number }> };
    expect(out.model).toBe('stories260K');
    expect(out.results.map((x) => [x.batch, x.steps, x.tokens])).toEqual([[1, 7, 7], [4, 7, 28]]);
    for (const x of out.results) expect(x.tokensPerSecond).toBeGreaterThan(0);
  });

  it('with --accepted, feeds and keeps k draft tokens per row per step: the ceiling of speculation', async () => {
    const r = await sssd(['bench-decode', '--model', models.stories260K.checkpoint, '--batch', '2', '--accepted', '0,3', '--tokens', '9', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { results: Array<{ batch: number; accepted: number; steps: number; tokens: number; msPerStep: number }> };
    // Both rows emit the same 8 timed tokens each: 8 plain steps, or 2 steps of 1 + 3 accepted.
    expect(out.results.map((x) => [x.batch, x.accepted, x.steps, x.tokens])).toEqual([[2, 0, 8, 16], [2, 3, 2, 16]]);
    const text = await sssd(['bench-decode', '--model', models.stories260K.checkpoint, '--batch', '1', '--accepted', '0,1', '--tokens', '5']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/batch +1 \+1 +accepted: +\d+ tok\/s .*\d+\.\d\dx plain/);
  });

  it('rejects a bad batch list with one line', async () => {
    const r = await sssd(['bench-decode', '--model', models.stories260K.checkpoint, '--batch', '1,x']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/^sssd: --batch must be an integer/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('refuses --accepted steps that would run past the context, before any (it crashed at position 512)', async () => {
    const r = await sssd(['bench-decode', '--model', models.stories260K.checkpoint, '--batch', '1', '--rounds', '1', '--prompt', '380', '--tokens', '128', '--accepted', '7']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("sssd: --prompt 380 + --tokens 128 with --accepted 7 feed 516 positions, past the model's context of 512");
  });
});
