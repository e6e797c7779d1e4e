/**
 * The datastore's file format: everything the pool needs to start serving
 * lookups straight from disk, with no re-sorting at start-up (the suffix arrays
 * are stored), read into typed arrays directly.
 *
 * Layout (little-endian):
 *   0   magic "SSSD-DS\0" (8 bytes)
 *   8   u32 format version (1, or 2 where some chunks are contributions)
 *   12  u32 header bytes H (offset of the first chunk's data, a multiple of 8)
 *   16  u32 vocabulary size (0 = unknown)
 *   20  i32 separator id (document boundary; BOS)
 *   24  u32 chunk count C
 *   28  u32 chunk size used when building (target for live appends)
 *   32  32 bytes SHA-256 of the tokenizer file (all zero = unknown)
 *   64  C x u32 token count per chunk (version 2: bit 31 set on chunks of
 *       contributed outputs, which follow the built ones), zero padding up to H
 *   H   per chunk: i32 tokens[n], then i32 suffixArray[n]
 *   end 32 bytes SHA-256 of every byte before it
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { CliError } from '../cli/cli-error';
import { createChunk, type DatastoreChunk } from './datastore-chunk';
import { SequentialReader, writeFileAtomically, writeFully } from './sequential-file';

export const DATASTORE_FILE_MAGIC = 'SSSD-DS\0';
/** The version this build writes when some chunks are contributions; a file with none is written as version 1, which older builds read. */
export const DATASTORE_FILE_VERSION = 2;
/** Bit 31 of a chunk's token count in a version-2 file: a chunk of contributed outputs. */
const CONTRIBUTED_BIT = 0x80000000;
const FIXED_HEADER_BYTES = 64;
const CHECKSUM_BYTES = 32;

export interface DatastoreFileMeta {
  vocabSize: number;
  separatorId: number;
  chunkTokens: number;
  /** Hex SHA-256 of the tokenizer file the tokens came from; '' when unknown. */
  tokenizerSha256: string;
}

export interface DatastoreFileContents extends DatastoreFileMeta {
  chunks: DatastoreChunk[];
  /**
   * How many of the chunks, from the first, were built (`sssd datastore
   * build`); the rest hold contributed outputs, which a loading pool may
   * extend and drop like its own. Absent when writing: all built.
   */
  builtChunks?: number;
  /** The file's format version, as read (ignored when writing). */
  formatVersion?: number;
}

/** A datastore file that is not one, is of another version, or is damaged. Printed plainly by the CLI. */
export class DatastoreFileError extends CliError {
  constructor(message: string) {
    super(message);
    this.name = 'DatastoreFileError';
  }
}

const littleEndian = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

function headerBytes(chunkCount: number): number {
  return Math.ceil((FIXED_HEADER_BYTES + 4 * chunkCount) / 8) * 8;
}

function bytesOf(a: Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes the file atomically (temporary file, then rename), so a reader never sees half of one. */
export async function writeDatastoreFile(file: string, contents: DatastoreFileContents): Promise<number> {
  if (!littleEndian) throw new Error('datastore files are little-endian; this host is not');
  const { chunks } = contents;
  const built = contents.builtChunks ?? chunks.length;
  if (!Number.isInteger(built) || built < 0 || built > chunks.length) throw new RangeError(`builtChunks must be in [0, ${chunks.length}], got ${built}`);
  const h = headerBytes(chunks.length);
  const header = Buffer.alloc(h);
  header.write(DATASTORE_FILE_MAGIC, 0, 'latin1');
  header.writeUInt32LE(built < chunks.length ? DATASTORE_FILE_VERSION : 1, 8);
  header.writeUInt32LE(h, 12);
  header.writeUInt32LE(contents.vocabSize, 16);
  header.writeInt32LE(contents.separatorId, 20);
  header.writeUInt32LE(chunks.length, 24);
  header.writeUInt32LE(contents.chunkTokens, 28);
  if (contents.tokenizerSha256) {
    if (!/^[0-9a-f]{64}$/i.test(contents.tokenizerSha256)) throw new RangeError('tokenizerSha256 must be 64 hex digits');
    header.write(contents.tokenizerSha256, 32, 'hex');
  }
  chunks.forEach((c, i) => {
    if (c.suffixArray.length !== c.tokens.length) throw new RangeError(`chunk ${i}: suffix array length differs from token count`);
    if (c.tokens.length >= CONTRIBUTED_BIT) throw new RangeError(`chunk ${i}: ${c.tokens.length} tokens, more than a chunk may hold`);
    header.writeUInt32LE((c.tokens.length | (i >= built ? CONTRIBUTED_BIT : 0)) >>> 0, FIXED_HEADER_BYTES + 4 * i);
  });

  return writeFileAtomically(file, async (fh) => {
    const hash = createHash('sha256');
    let size = 0;
    const write = async (bytes: Uint8Array): Promise<void> => {
      hash.update(bytes);
      await writeFully(fh, bytes);
      size += bytes.byteLength;
    };
    await write(header);
    for (const c of chunks) {
      await write(bytesOf(c.tokens));
      await write(bytesOf(c.suffixArray));
    }
    const digest = hash.digest();
    await writeFully(fh, digest);
    return size + digest.byteLength;
  });
}

/**
 * Reads and verifies a datastore file; throws DatastoreFileError naming what
 * is wrong. Chunk by chunk into arrays of their own, hashing as it goes: no
 * copy of the whole file is held (readFile stops at 2 GiB, one Buffer at 4,
 * and a datastore built from a large corpus passes both).
 */
export async function readDatastoreFile(file: string): Promise<DatastoreFileContents> {
  if (!littleEndian) throw new Error('datastore files are little-endian; this host is not');
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DatastoreFileError(`cannot read datastore file ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new DatastoreFileError(`cannot read datastore file ${file}: it is a folder`);
    const size = st.size;
    const reader = new SequentialReader(handle, () => new DatastoreFileError(`${file} is not a usable SSSD datastore: truncated while reading`));
    const readInto = (into: Uint8Array): Promise<void> => reader.readInto(into);
    const fixed = Buffer.alloc(Math.min(FIXED_HEADER_BYTES, size));
    await readInto(fixed);
    const h = checkFixedHeader(fixed, size, file);
    const header = Buffer.alloc(h);
    reader.seek(0);
    await readInto(header);
    const layout = parseLayout(header, size, file);
    const hash = createHash('sha256').update(header);
    const arrays: Array<{ tokens: Int32Array; suffixArray: Int32Array }> = [];
    for (const n of layout.counts) {
      const tokens = new Int32Array(n);
      const suffixArray = new Int32Array(n);
      await readInto(bytesOf(tokens));
      await readInto(bytesOf(suffixArray));
      hash.update(bytesOf(tokens));
      hash.update(bytesOf(suffixArray));
      arrays.push({ tokens, suffixArray });
    }
    const stored = Buffer.alloc(CHECKSUM_BYTES);
    await readInto(stored);
    if (!hash.digest().equals(stored)) throw new DatastoreFileError(`${file} is not a usable SSSD datastore: checksum mismatch (the file is corrupt)`);
    // The contents once the file is known whole (a flipped byte is corruption, said as such), before any index is built on them.
    checkSeparator(layout.meta, file);
    const chunks: DatastoreChunk[] = arrays.map(({ tokens, suffixArray }) => {
      checkChunkContents(tokens, suffixArray, layout.meta.vocabSize, file);
      return createChunk(tokens, suffixArray);
    });
    return { ...layout.meta, chunks, builtChunks: layout.builtChunks, formatVersion: layout.version };
  } finally {
    await handle.close();
  }
}

/** Verifies a whole datastore file held in memory (one written to a buffer, a test's). */
export function parseDatastoreFile(bytes: Uint8Array, name = 'datastore file'): DatastoreFileContents {
  if (!littleEndian) throw new Error('datastore files are little-endian; this host is not');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  checkFixedHeader(buf, buf.byteLength, name);
  const layout = parseLayout(buf, buf.byteLength, name);
  const body = buf.subarray(0, buf.byteLength - CHECKSUM_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(buf.subarray(buf.byteLength - CHECKSUM_BYTES))) damaged(name, 'checksum mismatch (the file is corrupt)');

  // Typed-array views need 4-byte alignment; copy once only if the read buffer lacks it.
  const aligned = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf);
  checkSeparator(layout.meta, name);
  const chunks: DatastoreChunk[] = [];
  let offset = layout.headerBytes;
  for (const n of layout.counts) {
    const tokens = new Int32Array(aligned.buffer, aligned.byteOffset + offset, n);
    const suffixArray = new Int32Array(aligned.buffer, aligned.byteOffset + offset + 4 * n, n);
    checkChunkContents(tokens, suffixArray, layout.meta.vocabSize, name);
    chunks.push(createChunk(tokens, suffixArray));
    offset += 8 * n;
  }
  return { ...layout.meta, chunks, builtChunks: layout.builtChunks, formatVersion: layout.version };
}

/** The header's separator (document boundary) id, past the checksum: a token id, inside the vocabulary where it is named. */
function checkSeparator(meta: { vocabSize: number; separatorId: number }, name: string): void {
  const { vocabSize, separatorId } = meta;
  if (separatorId < 0 || (vocabSize > 0 && separatorId >= vocabSize)) damaged(name, `separator id ${separatorId} is outside the vocabulary${vocabSize > 0 ? ` (size ${vocabSize})` : ''}`);
}

/**
 * A chunk's contents, past its checksum (which only says the file is as its
 * writer wrote it): token ids inside the vocabulary (any count where the file
 * names none), and a suffix array that holds each position once. Lookups
 * index by both; a file that broke this (a buggy or crafted writer) loaded,
 * and read out of bounds at the first request. O(n), once at load.
 */
function checkChunkContents(tokens: Int32Array, suffixArray: Int32Array, vocabSize: number, name: string): void {
  const limit = vocabSize > 0 ? vocabSize : 0x7fffffff;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t < 0 || t >= limit) damaged(name, `token id ${t} at position ${i} is outside the vocabulary${vocabSize > 0 ? ` (size ${vocabSize})` : ''}`);
  }
  const n = suffixArray.length;
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const at = suffixArray[i];
    if (at < 0 || at >= n || seen[at] === 1) damaged(name, `its suffix array is not a permutation of the chunk's ${n} positions (entry ${i}: ${at})`);
    seen[at] = 1;
  }
}

function damaged(name: string, why: string): never {
  throw new DatastoreFileError(`${name} is not a usable SSSD datastore: ${why}`);
}

/** Checks magic and version in the first 64 bytes of a file of `size` bytes; returns the header's length. */
function checkFixedHeader(buf: Buffer, size: number, name: string): number {
  if (size < FIXED_HEADER_BYTES + CHECKSUM_BYTES || buf.byteLength < FIXED_HEADER_BYTES || buf.toString('latin1', 0, 8) !== DATASTORE_FILE_MAGIC) {
    damaged(name, 'wrong magic bytes (not a datastore file, or one built by something else)');
  }
  const version = buf.readUInt32LE(8);
  if (version !== 1 && version !== DATASTORE_FILE_VERSION) {
    damaged(name, `format version ${version}, this build reads versions 1 and ${DATASTORE_FILE_VERSION}; rebuild it with \`sssd datastore build\``);
  }
  const h = buf.readUInt32LE(12);
  if (h !== headerBytes(buf.readUInt32LE(24)) || h > size) damaged(name, 'header is damaged');
  return h;
}

interface FileLayout {
  version: number;
  headerBytes: number;
  counts: number[];
  builtChunks: number;
  meta: DatastoreFileMeta;
}

/** Reads the chunk table from the whole header (`buf` holds at least its H bytes) and checks the file's size against it. */
function parseLayout(buf: Buffer, size: number, name: string): FileLayout {
  const version = buf.readUInt32LE(8);
  const h = buf.readUInt32LE(12);
  const chunkCount = buf.readUInt32LE(24);
  const counts: number[] = [];
  let builtChunks = chunkCount;
  let expected = h + CHECKSUM_BYTES;
  for (let i = 0; i < chunkCount; i++) {
    const word = buf.readUInt32LE(FIXED_HEADER_BYTES + 4 * i);
    const contributed = version >= 2 && word >= CONTRIBUTED_BIT;
    const n = contributed ? word - CONTRIBUTED_BIT : word;
    // Contributions follow the built chunks; a built one after them is no file this code wrote.
    if (contributed) builtChunks = Math.min(builtChunks, i);
    else if (builtChunks < chunkCount) damaged(name, 'header is damaged (a built chunk after contributed ones)');
    counts.push(n);
    expected += 8 * n;
  }
  if (size !== expected) {
    damaged(name, size < expected ? `truncated (${size} bytes, expected ${expected})` : `has ${size - expected} unexpected trailing bytes`);
  }
  const tokenizer = buf.subarray(32, 64);
  return {
    version,
    headerBytes: h,
    counts,
    builtChunks,
    meta: {
      vocabSize: buf.readUInt32LE(16),
      separatorId: buf.readInt32LE(20),
      chunkTokens: buf.readUInt32LE(28),
      tokenizerSha256: tokenizer.every((b) => b === 0) ? '' : tokenizer.toString('hex'),
    },
  };
}
