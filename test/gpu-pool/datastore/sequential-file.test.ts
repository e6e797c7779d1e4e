import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { open } from 'node:fs/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { copyFileAtomically, writeFileAtomically, writeFully } from '../../../gpu-pool/datastore/sequential-file';

const made: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('writeFileAtomically', () => {
  it('syncs the written bytes before the rename and the folder after it, so a power loss leaves the old file or the new one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'seq-file-'));
    made.push(dir);
    // Every FileHandle's sync, and what the folder held when each came.
    const probe = await open(path.join(dir, 'probe'), 'w');
    const handleProto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const seen: string[][] = [];
    const sync = handleProto.sync;
    vi.spyOn(handleProto, 'sync').mockImplementation(function (this: unknown) {
      seen.push(readdirSync(dir).filter((n) => n !== 'probe').sort());
      return sync.call(this);
    });
    const file = path.join(dir, 'saved.sssd-ds');
    await writeFileAtomically(file, async (handle) => {
      await writeFully(handle, new Uint8Array([1, 2, 3]));
      return 3;
    });
    // The temporary file synced while it alone was there, then the folder once renamed.
    expect(seen).toEqual([[`saved.sssd-ds.${process.pid}.tmp`], ['saved.sssd-ds']]);
    seen.length = 0;
    await copyFileAtomically(file, path.join(dir, 'copy.sssd-ds'));
    expect(seen).toEqual([[`copy.sssd-ds.${process.pid}.tmp`, 'saved.sssd-ds'], ['copy.sssd-ds', 'saved.sssd-ds']]);
  });

  it("removes the temporary files writers killed mid-write left beside the file, not a live writer's nor a fresh one", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'seq-file-'));
    made.push(dir);
    const file = path.join(dir, 'live.sssd-ds');
    const hourAgo = new Date(Date.now() - 3_600_000);
    // A pid past any the kernel hands out: its writer is gone.
    for (const name of ['live.sssd-ds.4194399.tmp', 'live.sssd-ds.4194398.tmp', `live.sssd-ds.${process.ppid}.tmp`, 'other.sssd-ds.4194399.tmp', 'live.sssd-ds.notes.tmp']) {
      writeFileSync(path.join(dir, name), 'half');
      utimesSync(path.join(dir, name), hourAgo, hourAgo);
    }
    // Written to a moment ago: perhaps a writer on another host sharing the folder.
    writeFileSync(path.join(dir, 'live.sssd-ds.4194397.tmp'), 'writing');
    await writeFileAtomically(file, async (handle) => {
      await writeFully(handle, new Uint8Array([1, 2, 3]));
      return 3;
    });
    expect(readdirSync(dir).sort()).toEqual(['live.sssd-ds', `live.sssd-ds.${process.ppid}.tmp`, 'live.sssd-ds.4194397.tmp', 'live.sssd-ds.notes.tmp', 'other.sssd-ds.4194399.tmp'].sort());
  });
});
