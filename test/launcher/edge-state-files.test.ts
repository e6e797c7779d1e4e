import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { damagedStateFiles } from '../../launcher/edge-state-files';
import { putLocalKv } from '../support/local-kv';
import { ServiceExitedError } from '../../launcher/service-process';
import { startEdge } from '../../launcher/stack';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function overwriteStart(file: string): void {
  // The header gone, the size kept, as a disk or a stray copy may leave it.
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from('not a database, not at all'), 0, 26, 0);
  closeSync(fd);
}

describe('the edge state check', () => {
  it('finds nothing in state wrangler wrote, and names a KV file whose header is gone; workerd then fails and the launcher says which file', async () => {
    const state = mkdtempSync(path.join(tmpdir(), 'sssd-edge-state-'));
    dirs.push(state);
    // Real state: wrangler's own local KV, as `sssd up` provisions keys into it.
    await putLocalKv('probe', 'value', state);
    expect(damagedStateFiles(state)).toEqual([]);

    const metadata = path.join(state, 'v3', 'kv', 'miniflare-KVNamespaceObject', 'metadata.sqlite');
    overwriteStart(metadata);
    // SQLite restores the first page from the write-ahead log while it holds one: that file still opens.
    expect(damagedStateFiles(state)).toEqual([]);
    // Without it (copied without its -wal, or the log emptied) the file is what workerd cannot start with.
    rmSync(`${metadata}-shm`, { force: true });
    writeFileSync(`${metadata}-wal`, '');
    expect(damagedStateFiles(state)).toEqual([metadata]);

    const failure = await startEdge({ poolUrls: ['http://127.0.0.1:9'], poolToken: 'edge-state-test-token', devKey: 'edge-state-test-key', persistTo: state }).then(
      (edge) => edge.stop().then(() => null),
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(ServiceExitedError);
    expect((failure as Error).message).toContain(`SQLite cannot open (damaged?): ${metadata}`);
  }, 120_000);
});
