/**
 * llama2.c `.bin` checkpoints: 7 little-endian int32 (dim, hidden_dim,
 * n_layers, n_heads, n_kv_heads, vocab_size, seq_len; negative vocab_size =
 * separate classifier), then float32 tensors, then the legacy freq_cis tables
 * (skipped), then the classifier if not shared.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { ModelConfig } from './model-config';
import type { LayerWeights, ModelWeights } from './model-weights';
import { ModelLoadError } from './model-load-error';
import { parseLlama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer';
import { MAX_VOCAB_SIZE } from '../../shared/tokenizer/tokenizer';

/** Whether the bytes parse whole as a llama2.c tokenizer (the file next to a checkpoint, named in its place). */
function isLlama2cTokenizer(bytes: Uint8Array): boolean {
  try {
    return parseLlama2cTokenizer(bytes).pieces.length > 1;
  } catch {
    return false;
  }
}

const HEADER_BYTES = 28;

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  contextLength: number;
  sharedClassifier: boolean;
}

function readLlama2cHeader(bytes: Uint8Array, name: string): Llama2cHeader {
  if (bytes.byteLength < HEADER_BYTES) {
    throw new ModelLoadError(`${name}: too short to be a llama2.c checkpoint (${bytes.byteLength} bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const h = Array.from({ length: 7 }, (_, i) => view.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, contextLength] = h;
  const sane =
    dim > 0 && dim <= 65536 && hiddenDim > 0 && hiddenDim <= 262144 && nLayers > 0 && nLayers <= 1024 &&
    nHeads > 0 && nKvHeads > 0 && nHeads % nKvHeads === 0 && dim % nHeads === 0 && (dim / nHeads) % 2 === 0 &&
    vocab !== 0 && Math.abs(vocab) <= MAX_VOCAB_SIZE && contextLength > 0 && contextLength <= 1 << 20;
  if (!sane) {
    const hint = isLlama2cTokenizer(bytes) ? ': it is a llama2.c tokenizer; give it as --tokenizer and the checkpoint as --model' : ` (implausible header ${h.join(',')})`;
    throw new ModelLoadError(`${name}: not a llama2.c checkpoint${hint}`);
  }
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), contextLength, sharedClassifier: vocab > 0 };
}

/** The floats of the freq_cis tables a checkpoint with this header may carry (real + imag, each seq_len * head_size / 2). */
function freqFloatsOf(h: Llama2cHeader): number {
  return h.contextLength * (h.dim / h.nHeads);
}

/**
 * Whether a checkpoint of `byteLength` bytes with this header carries the
 * freq_cis tables; a size that fits neither layout (truncated, padded) is refused.
 */
function hasFreqTables(h: Llama2cHeader, byteLength: number, name: string): boolean {
  const kvDim = (h.dim / h.nHeads) * h.nKvHeads;
  const L = h.nLayers;
  const bodyFloats =
    h.vocabSize * h.dim + L * (2 * h.dim + 2 * h.dim * h.dim + 2 * kvDim * h.dim + 3 * h.hiddenDim * h.dim) + h.dim;
  const clsFloats = h.sharedClassifier ? 0 : h.vocabSize * h.dim;
  const withFreq = HEADER_BYTES + 4 * (bodyFloats + freqFloatsOf(h) + clsFloats);
  const withoutFreq = HEADER_BYTES + 4 * (bodyFloats + clsFloats);
  if (byteLength === withFreq) return true;
  if (byteLength === withoutFreq) return false;
  if (byteLength < withoutFreq) throw new ModelLoadError(`${name}: truncated llama2.c checkpoint (${byteLength} bytes, expected ${withFreq})`);
  throw new ModelLoadError(`${name}: size ${byteLength} does not match its llama2.c header (expected ${withFreq} bytes)`);
}

/** Enough of a file to tell a llama2.c tokenizer named as the checkpoint (the largest vocabularies' are a few MB). */
const TOKENIZER_PROBE_BYTES = 16 * 2 ** 20;

/**
 * What parseLlama2cCheckpoint would refuse in a file's header or size, said
 * without reading its weights: `sssd up` says a truncated checkpoint before it
 * builds or suggests a datastore for it. `name` heads the message (the path as given).
 */
export async function checkLlama2cFile(filePath: string, name: string = filePath): Promise<void> {
  const file = await open(filePath, 'r');
  try {
    const { size } = await file.stat();
    const head = new Uint8Array(Math.min(size, TOKENIZER_PROBE_BYTES));
    await file.read(head, 0, head.byteLength, 0);
    hasFreqTables(readLlama2cHeader(head, name), size, name);
  } finally {
    await file.close();
  }
}

/** Parses a whole checkpoint file. Copies the floats once into aligned arrays. */
export function parseLlama2cCheckpoint(bytes: Uint8Array, filePath: string): { config: ModelConfig; weights: ModelWeights } {
  const name = path.basename(filePath);
  const h = readLlama2cHeader(bytes, name);
  const headDim = h.dim / h.nHeads;
  const kvDim = headDim * h.nKvHeads;
  const L = h.nLayers;
  const freqFloats = freqFloatsOf(h);
  const skipFreq = hasFreqTables(h, bytes.byteLength, name);

  // One aligned copy of the float payload; tensors are views into it.
  const floats = new Float32Array((bytes.byteLength - HEADER_BYTES) / 4);
  new Uint8Array(floats.buffer).set(bytes.subarray(HEADER_BYTES));
  let at = 0;
  const take = (n: number): Float32Array => {
    const t = floats.subarray(at, at + n);
    at += n;
    return t;
  };
  const perLayer = (n: number): Float32Array[] => Array.from({ length: L }, () => take(n));
  const tokenEmbedding = take(h.vocabSize * h.dim);
  const attnNorm = perLayer(h.dim);
  const wq = perLayer(h.dim * h.dim);
  const wk = perLayer(kvDim * h.dim);
  const wv = perLayer(kvDim * h.dim);
  const wo = perLayer(h.dim * h.dim);
  const ffnNorm = perLayer(h.dim);
  const w1 = perLayer(h.hiddenDim * h.dim);
  const w2 = perLayer(h.dim * h.hiddenDim);
  const w3 = perLayer(h.hiddenDim * h.dim);
  const finalNorm = take(h.dim);
  if (skipFreq) at += freqFloats;
  const classifier = h.sharedClassifier ? tokenEmbedding : take(h.vocabSize * h.dim);
  const layers: LayerWeights[] = Array.from({ length: L }, (_, l) => ({
    attnNorm: attnNorm[l], wq: wq[l], wk: wk[l], wv: wv[l], wo: wo[l],
    ffnNorm: ffnNorm[l], w1: w1[l], w2: w2[l], w3: w3[l],
  }));
  const config: ModelConfig = {
    name: name.replace(/\.bin$/, ''),
    dim: h.dim, hiddenDim: h.hiddenDim, nLayers: L, nHeads: h.nHeads, nKvHeads: h.nKvHeads, headDim,
    vocabSize: h.vocabSize, contextLength: h.contextLength,
    ropeTheta: 10000, normEps: 1e-5, bosId: 1, eosIds: [1],
  };
  return { config, weights: { tokenEmbedding, layers, finalNorm, classifier } };
}

/** Serialises canonical weights as a llama2.c checkpoint (used to write test fixtures and exports). */
export function writeLlama2cCheckpoint(config: ModelConfig, weights: ModelWeights): Uint8Array {
  const shared = weights.classifier === weights.tokenEmbedding;
  const parts: Float32Array[] = [weights.tokenEmbedding];
  const keys = ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'ffnNorm', 'w1', 'w2', 'w3'] as const;
  for (const k of keys) for (const layer of weights.layers) parts.push(layer[k]);
  parts.push(weights.finalNorm, new Float32Array(config.contextLength * config.headDim));
  if (!shared) parts.push(weights.classifier);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(HEADER_BYTES + total * 4);
  const view = new DataView(out.buffer);
  [config.dim, config.hiddenDim, config.nLayers, config.nHeads, config.nKvHeads,
    shared ? config.vocabSize : -config.vocabSize, config.contextLength].forEach((v, i) => view.setInt32(i * 4, v, true));
  let at = HEADER_BYTES;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += p.byteLength;
  }
  return out;
}
