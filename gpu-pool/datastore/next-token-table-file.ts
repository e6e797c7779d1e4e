/**
 * The next-token table's file (shared/drafting/next-token-table.ts), written
 * by `datastore build --model` beside the datastore as `FILE.next-tokens`.
 *
 * Layout (little-endian): the 8-byte magic "SSSDNTT1", a u32 header length,
 * the header as JSON (format version, vocabulary size, tokenizer and model
 * SHA-256, orders, candidates, entries, and the positions read from the
 * corpus, absent in files from before the build read them), zero padding
 * to a multiple of 4, then the arrays keysA (u32), keysB (u32), tokens (i32)
 * and probs (f32), entries or entries × candidates long each.
 */
import { existsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { NextTokenTable, type NextTokenTableArrays } from '../../shared/drafting/next-token-table';
import { SequentialReader, writeFileAtomically, writeFully } from './sequential-file';
import { unreadableFileMessage } from '../cli/cli-error';

const MAGIC = 'SSSDNTT1';
export const NEXT_TOKEN_FILE_VERSION = 1;

export class NextTokenFileError extends Error {}

/** The file is sound but holds another model's distributions. */
export class NextTokenModelError extends NextTokenFileError {}

export interface NextTokenExpectations {
  vocabSize?: number;
  tokenizerSha256?: string;
  modelSha256?: string;
}

interface Header {
  version: number;
  vocabSize: number;
  tokenizerSha256: string;
  /** The checkpoint whose distributions these are (load-model.ts's sha256). */
  modelSha256: string;
  orders: number[];
  candidates: number;
  entries: number;
  /** Positions read from the corpus's own documents (corpus-distributions.ts); absent in files built before they were. */
  corpusPositions?: number;
}

/** Where the table of a datastore file lives. */
export function nextTokenTablePath(datastoreFile: string): string {
  return `${datastoreFile}.next-tokens`;
}

/** The table file a command names: `flag` (unless 'none'), else the datastore's own; null for none. */
export function nextTokenTableFile(flag: string | undefined, datastoreFile: string | undefined): string | null {
  if (flag === 'none') return null;
  return flag ?? (datastoreFile ? nextTokenTablePath(datastoreFile) : null);
}

/**
 * The table a command runs with: `flag` (a file, or 'none'), else the
 * datastore's own `FILE.next-tokens` when it exists; null for none. The
 * datastore's own table written for another model (a datastore shared by
 * models with one tokenizer) is skipped with `onSkip`'s message: its drafts
 * would be that model's guesses. Named with `flag`, it is an error.
 */
export async function openNextTokenTable(
  flag: string | undefined,
  datastoreFile: string | undefined,
  expect: NextTokenExpectations,
  onSkip: (why: string) => void = () => {},
): Promise<NextTokenTable | null> {
  const file = nextTokenTableFile(flag, datastoreFile);
  if (!file || (flag === undefined && !existsSync(file))) return null;
  try {
    return await readNextTokenTable(file, expect);
  } catch (err) {
    if (flag === undefined && err instanceof NextTokenModelError) {
      onSkip(`${err.message}; drafting without it`);
      return null;
    }
    throw err;
  }
}

export async function writeNextTokenTable(
  file: string,
  table: NextTokenTable,
  meta: { vocabSize: number; tokenizerSha256: string; modelSha256: string; corpusPositions?: number },
): Promise<number> {
  const a = table.arrays;
  const header: Header = {
    version: NEXT_TOKEN_FILE_VERSION,
    vocabSize: meta.vocabSize,
    tokenizerSha256: meta.tokenizerSha256,
    modelSha256: meta.modelSha256,
    orders: a.orders,
    candidates: a.candidates,
    entries: a.keysA.length,
    corpusPositions: meta.corpusPositions,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headBytes = 12 + json.length;
  const pad = (4 - (headBytes % 4)) % 4;
  const head = Buffer.alloc(headBytes + pad);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  json.copy(head, 12);
  // Part by part, not one concatenated buffer: a table of a large corpus passes the 2-4 GiB a single Buffer or write holds.
  const parts = [head, a.keysA, a.keysB, a.tokens, a.probs].map((x) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  return writeFileAtomically(file, async (handle) => {
    let size = 0;
    for (const part of parts) {
      await writeFully(handle, part);
      size += part.byteLength;
    }
    return size;
  });
}

/**
 * Positions the table read from the corpus's documents (0: none, as with
 * `--no-self-read-corpus`), or null for a table built before the build read
 * them, or a file that is not a table. Reads the header only.
 */
export async function nextTokenTableCorpusPositions(file: string): Promise<number | null> {
  let handle;
  try {
    handle = await open(file, 'r');
    const head = Buffer.alloc(12);
    if ((await handle.read(head, 0, 12, 0)).bytesRead < 12 || head.toString('latin1', 0, 8) !== MAGIC) return null;
    const len = head.readUInt32LE(8);
    if (len > 1 << 20) return null;
    const json = Buffer.alloc(len);
    if ((await handle.read(json, 0, len, 12)).bytesRead < len) return null;
    const header = JSON.parse(json.toString('utf8')) as Partial<Header>;
    return typeof header.corpusPositions === 'number' ? header.corpusPositions : null;
  } catch {
    return null;
  } finally {
    await handle?.close();
  }
}

export async function readNextTokenTable(file: string, expect: NextTokenExpectations = {}): Promise<NextTokenTable> {
  const handle = await open(file, 'r').catch((err: unknown) => {
    throw new NextTokenFileError(unreadableFileMessage('next-token table', file, err));
  });
  // A folder opens on Linux; only its read fails, with Node's words and no name.
  if ((await handle.stat()).isDirectory()) {
    await handle.close();
    throw new NextTokenFileError(`next-token table ${file} is a folder; name a file`);
  }
  try {
    return await readOpenTable(handle, file, expect);
  } finally {
    await handle.close();
  }
}

/** Straight into the table's typed arrays, array by array: no copy of the whole file (readFile stops at 2 GiB). */
async function readOpenTable(handle: FileHandle, file: string, expect: NextTokenExpectations): Promise<NextTokenTable> {
  const size = (await handle.stat()).size;
  const reader = new SequentialReader(handle, () => new NextTokenFileError(`${file} is truncated`));
  const readInto = (into: Uint8Array): Promise<void> => reader.readInto(into);
  const head = Buffer.alloc(12);
  if (size < 12) throw new NextTokenFileError(`${file} is not a next-token table`);
  await readInto(head);
  if (head.toString('latin1', 0, 8) !== MAGIC) throw new NextTokenFileError(`${file} is not a next-token table`);
  const len = head.readUInt32LE(8);
  if (12 + len > size || len > 1 << 24) throw new NextTokenFileError(`${file} is truncated`);
  const json = Buffer.alloc(len);
  await readInto(json);
  let header: Header;
  try {
    header = JSON.parse(json.toString('utf8')) as Header;
  } catch {
    throw new NextTokenFileError(`${file} has a damaged header`);
  }
  if (header.version !== NEXT_TOKEN_FILE_VERSION) throw new NextTokenFileError(`${file} is format ${header.version}; this build reads ${NEXT_TOKEN_FILE_VERSION} (rebuild it with datastore build --model)`);
  if (expect.vocabSize !== undefined && header.vocabSize !== expect.vocabSize) {
    throw new NextTokenFileError(`${file} was built for a vocabulary of ${header.vocabSize} tokens, but the model has ${expect.vocabSize}`);
  }
  if (expect.tokenizerSha256 && header.tokenizerSha256 && header.tokenizerSha256 !== expect.tokenizerSha256.toLowerCase()) {
    throw new NextTokenFileError(`${file} was built with a different tokenizer`);
  }
  if (expect.modelSha256 && header.modelSha256 && header.modelSha256 !== expect.modelSha256.toLowerCase()) {
    throw new NextTokenModelError(`${file} holds another model's distributions (sha256 ${header.modelSha256.slice(0, 12)}…, this model ${expect.modelSha256.slice(0, 12)}…)`);
  }
  const n = header.entries;
  const c = header.candidates;
  if (!Number.isInteger(n) || n < 0 || !Number.isInteger(c) || c < 1 || c > 64) throw new NextTokenFileError(`${file} has a damaged header`);
  const arraysAt = 12 + len + ((4 - ((12 + len) % 4)) % 4);
  reader.seek(arraysAt);
  if (size !== arraysAt + 4 * (2 * n + 2 * n * c)) throw new NextTokenFileError(`${file} is truncated or damaged (${size} bytes)`);
  const take = async <T extends Uint32Array | Int32Array | Float32Array>(array: T): Promise<T> => {
    await readInto(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
    return array;
  };
  const arrays: NextTokenTableArrays = {
    orders: header.orders,
    candidates: c,
    keysA: await take(new Uint32Array(n)),
    keysB: await take(new Uint32Array(n)),
    tokens: await take(new Int32Array(n * c)),
    probs: await take(new Float32Array(n * c)),
  };
  for (let i = 0; i < arrays.tokens.length; i++) {
    const t = arrays.tokens[i];
    if (t < -1 || t >= header.vocabSize) throw new NextTokenFileError(`${file} holds token ${t}, outside the vocabulary`);
  }
  // The file has no checksum: damaged probabilities (NaN, negative, a context's summing past 1) drafted nothing, silently.
  for (let row = 0; row < n; row++) {
    let sum = 0;
    for (let k = row * c; k < (row + 1) * c; k++) {
      const p = arrays.probs[k];
      if (!(p >= 0 && p <= 1)) throw new NextTokenFileError(`${file} is damaged: probability ${p} at context ${row}`);
      sum += p;
    }
    if (sum > 1.001) throw new NextTokenFileError(`${file} is damaged: the probabilities of context ${row} add up to ${sum.toFixed(3)}`);
  }
  try {
    return new NextTokenTable(arrays);
  } catch (err) {
    throw new NextTokenFileError(`${file}: ${(err as Error).message}`);
  }
}
