/**
 * The safetensors format, by hand: an 8-byte little-endian header length, a
 * JSON header { name: { dtype, shape, data_offsets: [begin, end] } } (plus an
 * optional "__metadata__"), then the raw little-endian tensor bytes.
 */
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

export function readSafetensors(bytes: Uint8Array, name: string): Map<string, SafetensorsEntry> {
  if (bytes.byteLength < 8) throw new ModelLoadError(`${name}: not a safetensors file (too short)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen <= 0 || 8 + headerLen > bytes.byteLength) {
    throw new ModelLoadError(`${name}: not a safetensors file (bad header length ${headerLen})`);
  }
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as typeof header;
  } catch {
    throw new ModelLoadError(`${name}: not a safetensors file (header is not JSON)`);
  }
  const dataStart = 8 + headerLen;
  const out = new Map<string, SafetensorsEntry>();
  for (const [key, raw] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const e = raw as HeaderEntry;
    const [begin, end] = e.data_offsets ?? [];
    const count = (e.shape ?? []).reduce((a, b) => a * b, 1);
    const width = BYTES_PER[e.dtype];
    const shapeOk = Array.isArray(e.shape) && e.shape.every((d) => Number.isInteger(d) && d >= 0);
    // A negative begin would read the header as weights.
    if (!shapeOk || !Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || width === undefined || end - begin !== count * width) {
      throw new ModelLoadError(`${name}: tensor ${key} has an inconsistent header entry`);
    }
    if (dataStart + end > bytes.byteLength) {
      throw new ModelLoadError(`${name}: truncated (tensor ${key} runs past the end of the file)`);
    }
    out.set(key, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return out;
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
