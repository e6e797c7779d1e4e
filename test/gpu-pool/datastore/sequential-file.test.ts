import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileAtomically, writeFully } from '../../../gpu-pool/datastore/sequential-file';

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('writeFileAtomically', () => {
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
