import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { models, repoRoot, requireSharedData } from '../../support/shared-data';

const run = promisify(execFile);
const sssd = path.join(repoRoot, 'bin/sssd.mjs');

describe('sssd eval-drafts', () => {
  let dir = '';
  let workload = '';
  beforeAll(async () => {
    requireSharedData();
    dir = await mkdtemp(path.join(os.tmpdir(), 'sssd-eval-'));
    workload = path.join(dir, 'w.jsonl');
    const lines = [
      { user: 'a', prompt: 'Tim went to the park.', max_tokens: 12, arrival_s: 0 },
      { user: 'b', prompt: 'Sue had a red ball.', max_tokens: 12, arrival_s: 0.1 },
      { user: 'a', prompt: 'Tim went to the park.', max_tokens: 12, arrival_s: 0.2 },
    ];
    await writeFile(workload, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const args = (extra: string[]): string[] => [
    sssd, 'eval-drafts', '--model', models.stories260K.checkpoint, '--tokenizer', models.stories260K.tokenizer,
    '--workload', workload, '--cache-dir', path.join(dir, 'cache'), ...extra,
  ];

  it('replays a workload with the real model, caches the continuations, and reports τ per method and budget', async () => {
    const { stdout } = await run(process.execPath, args(['--methods', 'none,pld,context+user', '--budgets', '4,8', '--json']), { cwd: repoRoot });
    const out = JSON.parse(stdout) as { requests: number; continuationTokens: number; results: Array<{ method: string; budget: number; tau: number; steps: number }> };
    expect(out.requests).toBe(3);
    expect(out.continuationTokens).toBeGreaterThan(3);
    expect(out.results.map((r) => `${r.method}@${r.budget}`)).toEqual(['none@4', 'none@8', 'pld@4', 'pld@8', 'context+user@4', 'context+user@8']);
    const none = out.results[0];
    expect(none.tau).toBe(1);
    expect(none.steps).toBe(out.continuationTokens);
    // User a repeats a prompt: their cache predicts the whole greedy continuation of the
    // third request (12 tokens), so it takes ceil(12 / (budget + 1)) steps instead of 12.
    expect(out.results[4].steps).toBeLessThanOrEqual(none.steps - 12 + 3);
    expect(out.results[5].steps).toBeLessThanOrEqual(none.steps - 12 + 2);
    expect((await readdir(path.join(dir, 'cache'))).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    // Second run: continuations come from the cache, same figures; the table prints.
    const again = await run(process.execPath, args(['--methods', 'none', '--budgets', '4']), { cwd: repoRoot });
    expect(again.stdout).toMatch(/none\s+1\.00/);
    expect(again.stderr).toMatch(/greedy continuations from/);
  });

  it('explains user mistakes without a stack trace', async () => {
    const bad = await run(process.execPath, args(['--methods', 'bogus']), { cwd: repoRoot }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toMatch(/^sssd: --methods: unknown value "bogus"/);
    const noDs = await run(process.execPath, args(['--methods', 'context+datastore']), { cwd: repoRoot }).catch((e: { stderr: string }) => e);
    expect((noDs as { stderr: string }).stderr).toMatch(/need --datastore FILE/);
    expect((noDs as { stderr: string }).stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});
