/**
 * A file read or written front to back in whole arrays: the datastore's and
 * the next-token table's files, which pass the 2 GiB that readFile, and one
 * read or write call, can take. Each call moves at most 1 GiB; a short read
 * (the file ended) is an error the caller names.
 */
import { copyFile, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { processRuns } from './process-runs';

/** Most bytes one read or write call is asked for (Node refuses more than ~2 GiB in one). */
const PIECE_BYTES = 1 << 30;

export class SequentialReader {
  private position = 0;

  constructor(
    private readonly handle: FileHandle,
    /** The error for a file that ends before what is read from it. */
    private readonly truncated: () => Error,
  ) {}

  /** Where the next read starts. */
  seek(position: number): void {
    this.position = position;
  }

  /** Fills `into` from the file, from the current position on. */
  async readInto(into: Uint8Array): Promise<void> {
    for (let done = 0; done < into.byteLength; ) {
      const { bytesRead } = await this.handle.read(into, done, Math.min(into.byteLength - done, PIECE_BYTES), this.position);
      if (bytesRead === 0) throw this.truncated();
      done += bytesRead;
      this.position += bytesRead;
    }
  }
}

/** Writes all of `bytes` at the handle's current position. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.byteLength; ) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.byteLength - done, PIECE_BYTES));
    done += bytesWritten;
  }
}

/**
 * Writes `file` through `write` into a temporary file beside it, then renames
 * it into place: a reader never sees half of one, and a failed write leaves
 * the old file as it was. The bytes reach the disk before the rename, and the
 * rename before it returns: after a power loss the file is the old one or the
 * new one, not an empty or half-written one (some file systems order a
 * rename before the data it names). Returns the bytes written (what `write`
 * returns).
 */
export async function writeFileAtomically(file: string, write: (handle: FileHandle) => Promise<number>): Promise<number> {
  await removeOrphanedTemporaries(file);
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w');
  let size: number;
  try {
    size = await write(handle);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    // `file` a folder, say: the whole written copy must not stay behind.
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncFolder(path.dirname(file));
  return size;
}

/** Makes a rename in `dir` durable; where a folder cannot be opened to sync (some platforms), the rename stands as it is. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null);
  if (!handle) return;
  await handle.sync().catch(() => {});
  await handle.close();
}

/** Copies `source` to `target` as writeFileAtomically writes: a crash mid-copy leaves no half of it at `target`. */
export async function copyFileAtomically(source: string, target: string): Promise<void> {
  await removeOrphanedTemporaries(target);
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    await copyFile(source, tmp);
    const copied = await open(tmp, 'r+');
    try {
      await copied.sync();
    } finally {
      await copied.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncFolder(path.dirname(target));
}

/** A temporary file this old, of a writer that no longer runs here, is left over from a crash. */
const ORPHAN_AGE_MS = 60_000;

/**
 * Removes the temporary files beside `file` (`FILE.<pid>.tmp`) that writers
 * killed mid-write left: each may be as big as the file, and a pool killed
 * over and over left one per crash. One whose writer still runs on this
 * host, or that was written to within the last minute (a writer on another
 * host sharing the folder), is kept.
 */
async function removeOrphanedTemporaries(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = /^(\d+)\.tmp$/.exec(name.slice(prefix.length))?.[1];
    if (pid === undefined || Number(pid) === process.pid || processRuns(Number(pid))) continue;
    const orphan = path.join(dir, name);
    const modified = await stat(orphan).then((st) => st.mtimeMs, () => Date.now());
    if (Date.now() - modified < ORPHAN_AGE_MS) continue;
    await unlink(orphan).catch(() => {});
  }
}
