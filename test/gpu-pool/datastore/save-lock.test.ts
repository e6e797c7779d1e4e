import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { processStartTicks } from '../../../gpu-pool/datastore/process-runs';
import { STALE_LOCK_MS, acquireSaveLock, saveLockPath } from '../../../gpu-pool/datastore/save-lock';

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileIn(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'save-lock-'));
  made.push(dir);
  return path.join(dir, 'live.sssd-ds');
}

/** A lock as another owner wrote it, `ageMs` since it was last refreshed. */
function lockedBy(file: string, owner: object, ageMs = 0): void {
  writeFileSync(saveLockPath(file), JSON.stringify(owner));
  const at = new Date(Date.now() - ageMs);
  utimesSync(saveLockPath(file), at, at);
}

describe('the --save-datastore lock', () => {
  it("is taken where there is none, names its owner, and goes at release", async () => {
    const file = fileIn();
    const lock = await acquireSaveLock(file);
    expect(JSON.parse(readFileSync(saveLockPath(file), 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    await lock.release();
    expect(existsSync(saveLockPath(file))).toBe(false);
  });

  it('keeps its lock fresh while the pool runs, and a released lock leaves nothing to remove at exit', async () => {
    const file = fileIn();
    const exitHandlers = process.listenerCount('exit');
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const lock = await acquireSaveLock(file);
      expect(process.listenerCount('exit')).toBe(exitHandlers + 1);
      // Made to look old, then a minute of the pool running: refreshed, so a pool on another host sees it live.
      const old = new Date(Date.now() - STALE_LOCK_MS);
      utimesSync(saveLockPath(file), old, old);
      vi.advanceTimersByTime(60_000);
      for (let i = 0; i < 50 && statSync(saveLockPath(file)).mtimeMs < Date.now() - 10_000; i++) await new Promise((r) => setTimeout(r, 20));
      expect(statSync(saveLockPath(file)).mtimeMs).toBeGreaterThan(Date.now() - 10_000);
      await lock.release();
      // Another pool may take the file's lock now: this process's exit must not remove it.
      expect(process.listenerCount('exit')).toBe(exitHandlers);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses while another process on this host that took it still runs', async () => {
    const file = fileIn();
    // The test runner's parent: alive, and the one that started when its start time says.
    lockedBy(file, { pid: process.ppid, host: hostname(), startTicks: processStartTicks(process.ppid) });
    await expect(acquireSaveLock(file)).rejects.toThrow(`another pool (pid ${process.ppid}) saves to ${file}`);
  });

  it("takes over a lock whose process is gone, whose pid another process now has (this one's included), or that is no lock", async () => {
    for (const owner of [
      { pid: 4194399, host: hostname() },
      { pid: process.ppid, host: hostname(), startTicks: -1 },
      { pid: process.pid, host: hostname() },
      {},
    ]) {
      const file = fileIn();
      lockedBy(file, owner);
      const lock = await acquireSaveLock(file);
      expect(JSON.parse(readFileSync(saveLockPath(file), 'utf8')).pid).toBe(process.pid);
      await lock.release();
    }
  });

  it("refuses another host's lock while it is refreshed, and takes it over once it is not", async () => {
    const file = fileIn();
    lockedBy(file, { pid: 12, host: 'elsewhere' });
    await expect(acquireSaveLock(file)).rejects.toThrow(/is saved to by a pool on elsewhere \(pid 12, .*refreshed 0 s ago\)/);
    lockedBy(file, { pid: 12, host: 'elsewhere' }, STALE_LOCK_MS + 1000);
    const lock = await acquireSaveLock(file);
    await lock.release();
  });
});
