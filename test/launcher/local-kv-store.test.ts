// The local store as `sssd key list --local` opens it (launcher/local-kv-store.ts) when its SQLite files are locked by
// another process, as a workerd beside it (`wrangler dev`, another command) now and then holds them: the command tries
// again, and where the store stays busy says so (exit 2) with workerd's words. The lock is held by the sqlite3 shell,
// in exclusive locking mode, until the command has exited, so every try finds the store busy.
import { execFile, execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sssdNodeArgs } from '../support/compiled-cli';
import { withLocalKv } from '../support/local-kv';
import { repoRoot } from '../support/shared-data';

interface Run { code: number; stdout: string; stderr: string }
function sssd(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...sssdNodeArgs(), ...args], { cwd: repoRoot, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function hasSqlite3(): boolean {
  try {
    execFileSync('sqlite3', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The sqlite3 shell holding `file` locked (a write in exclusive locking mode, not committed) until its stdin ends. */
async function lockedBySqlite3(file: string): Promise<ChildProcessWithoutNullStreams> {
  const shell = spawn('sqlite3', [file]);
  const locked = new Promise<void>((resolve, reject) => {
    let out = '';
    shell.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('locked')) resolve();
    });
    shell.on('exit', (code) => reject(new Error(`sqlite3 exited (${code}) before it held ${file}`)));
  });
  shell.stdin.write("PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\nCREATE TABLE held_by_test(x);\nSELECT 'locked';\n");
  await locked;
  return shell;
}

/** Ends the shell: its transaction rolled back, its lock let go. */
async function release(shell: ChildProcessWithoutNullStreams): Promise<void> {
  const exited = new Promise((resolve) => shell.on('exit', resolve));
  shell.stdin.end();
  await exited;
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasSqlite3())('the local store, busy', () => {
  it("tries again while another process holds the store's files, and says so where it stays busy (exit 2)", async () => {
    const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-local-kv-busy-'));
    dirs.push(persistTo);
    mkdirSync(path.join(persistTo, 'v3', 'kv'), { recursive: true });
    await withLocalKv(persistTo, (kv) => kv.put(`key:${'ab'.repeat(32)}`, '{"tenant":"busy"}'));
    const objects = path.join(persistTo, 'v3', 'kv', 'miniflare-KVNamespaceObject');
    const namespaceFile = readdirSync(objects).find((name) => /^[0-9a-f]{64}\.sqlite$/.test(name));
    expect(namespaceFile).toBeDefined();

    // The namespace's own file: every list is refused (KV's "internal error", workerd's SQLITE_BUSY).
    let shell = await lockedBySqlite3(path.join(objects, namespaceFile!));
    const listing = await sssd(['key', 'list', '--local', '--persist-to', persistTo]);
    await release(shell);
    expect(listing).toMatchObject({ code: 2, stdout: '' });
    expect(listing.stderr).toMatch(/^sssd: key list: the local store's list failed \(the store stayed busy: 5 tries\):\n/);
    expect(listing.stderr).toContain('SQLITE_BUSY');

    // The namespaces' metadata: workerd cannot start on it.
    shell = await lockedBySqlite3(path.join(objects, 'metadata.sqlite'));
    const opening = await sssd(['key', 'revoke', 'abababab', '--local', '--persist-to', persistTo]);
    await release(shell);
    expect(opening).toMatchObject({ code: 2, stdout: '' });
    expect(opening.stderr).toMatch(/^sssd: key revoke: the local store's opening failed \(the store stayed busy: 5 tries\):\n/);
    expect(opening.stderr).toContain('SQLITE_BUSY');

    // Let go, the store serves again, unchanged.
    const after = await sssd(['key', 'list', '--local', '--persist-to', persistTo, '--json']);
    expect(after.code).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ hash: 'ab'.repeat(32), tenant: 'busy', state: 'active' })]);
  }, 120_000);
});
