/**
 * A file read or written front to back in whole arrays: the datastore's and
 * the next-token table's files, which pass the 2 GiB that readFile, and one
 * read or write call, can take. Each call moves at most 1 GiB; a short read
 * (the file ended) is an error the caller names.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

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
 * the old file as it was. Returns the bytes written (what `write` returns).
 */
export async function writeFileAtomically(file: string, write: (handle: FileHandle) => Promise<number>): Promise<number> {
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, 'w');
  let size: number;
  try {
    size = await write(handle);
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
  return size;
}
