// launcher/orphan-guard.mjs: what it removes when its command ends or its launcher goes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../launcher/stack';

function guard(removes: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'launcher/orphan-guard.mjs'), process.execPath, '-e', ''], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, SSSD_GUARD_REMOVES: removes },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', () => resolve(stderr));
  });
}

describe('the orphan guard', () => {
  it("removes the edge's secrets folder when its command ends, and nothing that is not one", async () => {
    const secrets = mkdtempSync(path.join(tmpdir(), 'sssd-edge-'));
    const other = mkdtempSync(path.join(tmpdir(), 'not-secrets-'));
    try {
      await guard(secrets);
      expect(existsSync(secrets)).toBe(false);
      const said = await guard(other);
      expect(existsSync(other)).toBe(true);
      expect(said).toMatch(/is no sssd-edge-\* folder .*left alone/);
    } finally {
      rmSync(secrets, { recursive: true, force: true });
      rmSync(other, { recursive: true, force: true });
    }
  });
});
