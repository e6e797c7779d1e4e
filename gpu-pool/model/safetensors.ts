/**
 * The safetensors format, by hand: an 8-byte little-endian header length, a
 * JSON header { name: { dtype, shape, data_offsets: [begin, end] } } (plus an
 * optional "__metadata__"), then the raw little-endian tensor bytes.
 */
import { open } from 'node:fs/promises';
import { unreadableFileMessage } from '../cli/cli-error';
import { ModelLoadError } from './model-load-error';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16';

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  /** Raw bytes of the tensor (a view into the file). */
  data: Uint8Array;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES_PER: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A tensor's place in the file: bytes [start, end) from the file's first byte. */
interface TensorPlace {
  key: string;
  dtype: string;
  shape: number[];
  start: number;
  end: number;
}

/** The 8-byte header length at the file's start, checked against the file's size. */
function headerLength(first8: Uint8Array, fileBytes: number, name: string): number {
  if (fileBytes < 8 || first8.byteLength < 8) throw new ModelLoadError(`${name}: not a safetensors file (too short)`);
  const headerLen = Number(new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true));
  if (headerLen <= 0 || 8 + headerLen > fileBytes) throw new ModelLoadError(`${name}: not a safetensors file (bad header length ${headerLen})`);
  return headerLen;
}

/** Every tensor's dtype, shape and byte range, checked against each other and the file's size. */
function tensorPlaces(headerJson: Uint8Array, fileBytes: number, name: string): TensorPlace[] {
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(headerJson)) as typeof header;
  } catch {
    throw new ModelLoadError(`${name}: not a safetensors file (header is not JSON)`);
  }
  const dataStart = 8 + headerJson.byteLength;
  const places: TensorPlace[] = [];
  for (const [key, raw] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const e = raw as HeaderEntry;
    const width = BYTES_PER[e.dtype];
    // An FP8 or unsigned checkpoint is named for what it is, not for a size that cannot be checked.
    if (width === undefined) throw new ModelLoadError(`${name}: tensor ${key} has dtype ${String(e.dtype).slice(0, 20)}, unsupported (F32, F16, BF16 are supported)`);
    const [begin, end] = e.data_offsets ?? [];
    const count = (e.shape ?? []).reduce((a, b) => a * b, 1);
    const shapeOk = Array.isArray(e.shape) && e.shape.every((d) => Number.isInteger(d) && d >= 0);
    // A negative begin would read the header as weights.
    if (!shapeOk || !Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end - begin !== count * width) {
      throw new ModelLoadError(`${name}: tensor ${key} has an inconsistent header entry`);
    }
    if (dataStart + end > fileBytes) throw new ModelLoadError(`${name}: truncated (tensor ${key} runs past the end of the file)`);
    places.push({ key, dtype: e.dtype, shape: e.shape, start: dataStart + begin, end: dataStart + end });
  }
  return places;
}

/** A safetensors file held in memory: its tensors as views into `bytes`. */
export function readSafetensors(bytes: Uint8Array, name: string): Map<string, SafetensorsEntry> {
  const headerLen = headerLength(bytes, bytes.byteLength, name);
  const out = new Map<string, SafetensorsEntry>();
  for (const t of tensorPlaces(bytes.subarray(8, 8 + headerLen), bytes.byteLength, name)) {
    out.set(t.key, { dtype: t.dtype, shape: t.shape, data: bytes.subarray(t.start, t.end) });
  }
  return out;
}

/** How much of a weights file is read at a time: files run to many GiB, past what one read (2 GiB) or one buffer takes. */
const READ_CHUNK_BYTES = 64 * 1024 * 1024;

/**
 * A safetensors file read from disk in chunks, each tensor into a buffer of
 * its own (a 2.2 GB single-file checkpoint was past `readFile`'s 2 GiB).
 * `onBytes` sees every byte of the file, in order (the model's checksum).
 */
export async function readSafetensorsFile(file: string, name: string, onBytes: (chunk: Uint8Array) => void, chunkBytes = READ_CHUNK_BYTES): Promise<Map<string, SafetensorsEntry>> {
  const handle = await open(file, 'r').catch((err: unknown) => {
    throw new ModelLoadError(unreadableFileMessage('weights file', file, err));
  });
  try {
    const size = (await handle.stat()).size;
    const first8 = new Uint8Array(8);
    await handle.read(first8, 0, Math.min(8, size), 0);
    const headerLen = headerLength(first8, size, name);
    const headerJson = new Uint8Array(headerLen);
    await handle.read(headerJson, 0, headerLen, 8);
    const places = tensorPlaces(headerJson, size, name).sort((a, b) => a.start - b.start);
    const out = new Map<string, SafetensorsEntry>();
    const data = places.map((t) => new Uint8Array(t.end - t.start));
    places.forEach((t, i) => out.set(t.key, { dtype: t.dtype, shape: t.shape, data: data[i] }));
    const chunk = new Uint8Array(Math.min(chunkBytes, Math.max(1, size)));
    let first = 0; // the first tensor that may still overlap what is read next
    for (let at = 0; at < size; ) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.byteLength, size - at), at);
      if (bytesRead === 0) throw new ModelLoadError(`${name}: the file shrank while it was read`);
      const got = chunk.subarray(0, bytesRead);
      onBytes(got);
      const chunkEnd = at + bytesRead;
      while (first < places.length && places[first].end <= at) first++;
      for (let i = first; i < places.length && places[i].start < chunkEnd; i++) {
        const t = places[i];
        const from = Math.max(t.start, at);
        const to = Math.min(t.end, chunkEnd);
        if (to > from) data[i].set(got.subarray(from - at, to - at), from - t.start);
      }
      at = chunkEnd;
    }
    return out;
  } finally {
    await handle.close();
  }
}

/** Decodes an F32/F16/BF16 tensor into a fresh Float32Array. */
export function toFloat32(entry: SafetensorsEntry, name: string): Float32Array {
  const { data } = entry;
  const n = data.byteLength / (entry.dtype === 'F32' ? 4 : 2);
  const out = new Float32Array(n);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (entry.dtype) {
    case 'F32':
      new Uint8Array(out.buffer).set(data);
      return out;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      return out;
    default:
      throw new ModelLoadError(`${name}: unsupported dtype ${entry.dtype} (F32, F16, BF16 are supported)`);
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Writes F32 tensors as one safetensors file. */
export function writeSafetensors(tensors: ReadonlyArray<{ name: string; shape: number[]; data: Float32Array }>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8); // keep the data 8-byte aligned
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
