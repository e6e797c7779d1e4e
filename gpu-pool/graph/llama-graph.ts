/**
 * The verification graph of a llama-family model, as ONNX (opset 17: standard
 * ops and onnxruntime's SimplifiedLayerNormalization, which its CPU, CUDA and
 * WebGPU providers all implement).
 *
 * Inputs:  input_ids int64 [B,T], position_ids int64 [B,T],
 *          attention_mask float32 [B,1,T,P+T] (additive: 0 or -1e9),
 *          past_key_L / past_value_L float32 [B,kvH,P,hd] per layer L.
 * Outputs: logits [B,T,V], new_key_L / new_value_L [B,kvH,T,hd] (only the new
 *          tokens: the runtime owns the cache, so the past is never copied back).
 *          With `packedOutputs`, the same tensors flattened into one output,
 *          `packed_outputs` (packedOutputLayout): onnxruntime's WebGPU provider
 *          reads each output back with a flush and a blocking wait of its own,
 *          so eleven outputs cost eleven round trips to the GPU per pass.
 *
 * With `residentKv` (GPU providers) the keys/values never leave the device:
 * uploading the packed past was most of a WebGPU pass (H200, batch 128, past
 * 256: 22 ms a pass with the past fed from host memory, 4.5 ms with the same
 * past already on the GPU). The past then comes from a store that the graph
 * takes and hands back each pass, [slots*2L, kvH, C, hd], row slot*2L + j
 * (j = 2*layer for keys, +1 for values), C = the context length:
 *   1. commit: the rows of the previous pass's `new_kv` that were accepted
 *      (commit_src, rows of it flattened to [-1, hd]) are scattered into the
 *      store at commit_dst = (store row, kv head, position);
 *   2. past: the rows past_rows ([2L*B], layer-major) are gathered from the
 *      store and cut to past_length positions, then split per layer;
 *   3. outputs: logits (to the host), new_kv [2L*B, kvH, T, hd] (layer-major,
 *      keys then values per layer) and kv_store_out, both left on the device.
 * A pass with nothing to commit scatters one row into slot 0, which no
 * sequence uses. resident-kv.ts owns the store, the slots and the commits.
 *
 * Folded at build time to keep the per-layer op count low (these models are
 * tiny, so op overhead dominates FLOPs): 1/sqrt(hd) into Wq; RoPE's "rotate
 * pairs" into extra weight columns (q_rot = x Wq_rot, q = q*cos + q_rot*sin),
 * so one MatMul + Split gives [q|k], [q_rot|k_rot] and v, and one Mul-Mul-Add
 * rotates q and k together (graph v4: 12 kernels fewer a pass than rotating
 * them apart; lavapipe 7-10% faster, CPU the same). GQA without repeating
 * K/V: Q is laid out as [B, kvH, G*T, hd] and the mask is tiled G times.
 * RMSNorm is one
 * SimplifiedLayerNormalization node (3-5% faster per step on CPU than folding
 * the weight into the next matmul, measured interleaved in one process on
 * stories260K). Graph v2 spelled it as six ops for the CPU optimizer to fuse,
 * which the WebGPU provider's optimizer does not: 238 kernels a pass there
 * against 183 with v3 (lavapipe: 15.1 → 12.9 ms per pass; CPU: the same
 * optimised graph, same outputs), 171 with v4.
 */
import type { ModelConfig } from '../model/model-config';
import type { ModelWeights } from '../model/model-weights';
import { OnnxGraphBuilder, type ExternalDataSink } from './onnx-graph-builder';

/** Bump when the graph's structure or folding changes: it keys the on-disk cache. */
export const GRAPH_VERSION = 4;
/** Additive mask value for positions a token must not see: finite so a fully masked (padded) row stays NaN-free. */
export const MASKED = -1e9;

export function pastKeyName(layer: number): string { return `past_key_${layer}`; }
export function pastValueName(layer: number): string { return `past_value_${layer}`; }
export function newKeyName(layer: number): string { return `new_key_${layer}`; }
export function newValueName(layer: number): string { return `new_value_${layer}`; }
export const PACKED_OUTPUTS = 'packed_outputs';

export const KV_STORE = 'kv_store';
export const KV_STORE_OUT = 'kv_store_out';
export const PREV_NEW_KV = 'prev_new_kv';
export const NEW_KV = 'new_kv';
export const COMMIT_SRC = 'commit_src';
export const COMMIT_DST = 'commit_dst';
export const PAST_ROWS = 'past_rows';
export const PAST_LENGTH = 'past_length';
/** Rows in each attention group ([2] int64), with `attentionGroups`. */
export const GROUP_ROWS = 'group_rows';

/** An input's name for attention group `group` of a grouped graph: `input_ids_1`, `past_key_3_0`. */
export function groupInputName(name: string, group: number): string {
  return `${name}_${group}`;
}

/** How the graph takes the past and hands its results back. */
export interface GraphLayout {
  /** One flat output instead of logits and 2 x layers key/value outputs (for GPU providers). */
  packedOutputs: boolean;
  /** Keys/values kept on the device in a store the graph updates (see the file comment); excludes packedOutputs. */
  residentKv?: boolean;
  /**
   * 2: the rows come in two groups, each with its own past length, mask and
   * packed past (inputs named by groupInputName, plus GROUP_ROWS); the
   * weight matmuls run over both at once, the attention per group, so rows
   * with short pasts do not attend over the longest row's padding. Host
   * keys/values and separate outputs only.
   */
  attentionGroups?: 1 | 2;
}
export const SEPARATE_OUTPUTS: GraphLayout = { packedOutputs: false };

/** The graph's version and layout, as the graph and calibration caches key them. */
export function graphId(layout: GraphLayout): string {
  return `g${GRAPH_VERSION}${layout.packedOutputs ? 'p' : ''}${layout.residentKv ? 'r' : ''}${(layout.attentionGroups ?? 1) > 1 ? `a${layout.attentionGroups}` : ''}`;
}

/** The on-disk cache key of a model's graph in a layout. */
export function graphKey(sha256: string, layout: GraphLayout): string {
  return `${sha256}-${graphId(layout)}`;
}

/**
 * Where each result lies in `packed_outputs` for a pass of `batch` rows of
 * `tokens` new tokens, in floats: logits [B,T,V], then per layer new keys and
 * new values [B,kvH,T,hd]; each in the layout of its separate output.
 */
export interface PackedOutputLayout {
  logits: number;
  keys: Float64Array;
  values: Float64Array;
  total: number;
}

export function packedOutputLayout(config: ModelConfig, batch: number, tokens: number): PackedOutputLayout {
  const perLayer = batch * config.nKvHeads * tokens * config.headDim;
  const logitsLength = batch * tokens * config.vocabSize;
  // Offsets in doubles: a 7B-shaped pass of 32 rows × 2,048 tokens runs past 2^31 floats, where int32 wrapped negative.
  const keys = new Float64Array(config.nLayers);
  const values = new Float64Array(config.nLayers);
  for (let l = 0; l < config.nLayers; l++) {
    keys[l] = logitsLength + 2 * l * perLayer;
    values[l] = keys[l] + perLayer;
  }
  return { logits: 0, keys, values, total: logitsLength + 2 * config.nLayers * perLayer };
}

/**
 * The graph that grows a resident key/value store (resident-kv.ts): `kv_store`
 * with `grow_pads` = [0,0,0,0, extra rows,0,0,0] appended zero rows, as
 * `kv_store_out`. A graph, not a download and re-upload: the store stays on
 * the device (and onnxruntime-node's WebGPU download of it aborts the process).
 */
export const GROW_PADS = 'grow_pads';
export function buildKvStoreGrowGraph(config: ModelConfig): Uint8Array {
  const g = new OnnxGraphBuilder(null);
  g.input(KV_STORE, 'float', ['store_rows', config.nKvHeads, config.contextLength, config.headDim]);
  g.input(GROW_PADS, 'int64', [8]);
  g.output(KV_STORE_OUT, 'float', ['grown_rows', config.nKvHeads, config.contextLength, config.headDim]);
  g.op1('Pad', [KV_STORE, GROW_PADS], { mode: 'constant' }, KV_STORE_OUT);
  return g.serialize(`${config.name}-kv-store-grow`, `sssd resident key/value store growth for ${config.name}`);
}

/** Transposes [rows, cols] W (y = W x) to [cols, rows] for x @ W^T, times `scale`. */
function transposeScaled(w: Float32Array, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c] * scale;
  }
  return out;
}

/** Rows of W such that x W_rot gives, per adjacent pair (a, b), (-b, a). */
function rotatePairs(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r += 2) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = -w[(r + 1) * cols + c];
      out[(r + 1) * cols + c] = w[r * cols + c];
    }
  }
  return out;
}

/** Concatenates [in, n_i] matrices along columns. */
function concatColumns(mats: Float32Array[], rows: number, widths: number[]): Float32Array {
  const total = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let at = r * total;
    mats.forEach((m, i) => {
      out.set(m.subarray(r * widths[i], (r + 1) * widths[i]), at);
      at += widths[i];
    });
  }
  return out;
}

/** cos/sin of position * theta^(-2j/hd) for each of `heads` heads' pairs: [contextLength, heads*hd]. */
function ropeTables(config: ModelConfig, heads: number): { cos: Float32Array; sin: Float32Array } {
  const { headDim: hd, contextLength, ropeTheta } = config;
  const width = heads * hd;
  const cos = new Float32Array(contextLength * width);
  const sin = new Float32Array(contextLength * width);
  for (let p = 0; p < contextLength; p++) {
    for (let j = 0; j < hd / 2; j++) {
      const angle = p * Math.pow(ropeTheta, (-2 * j) / hd);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const at = p * width + h * hd + 2 * j;
        cos[at] = c; cos[at + 1] = c;
        sin[at] = s; sin[at + 1] = s;
      }
    }
  }
  return { cos, sin };
}

/** Bytes of the float initializers the graph will hold (decides inline vs external data). */
export function graphWeightBytes(config: ModelConfig): number {
  const { dim, hiddenDim, nLayers, nKvHeads, headDim, vocabSize, contextLength } = config;
  const kvDim = nKvHeads * headDim;
  const perLayer = dim * (2 * dim + 3 * kvDim) + dim * dim + dim * 2 * hiddenDim + hiddenDim * dim;
  return 4 * (2 * vocabSize * dim + nLayers * (perLayer + 2 * dim) + dim + 2 * contextLength * (dim + kvDim));
}

/** Serialises the graph; with `external`, big weights are written to that sink instead of inline. */
export function buildLlamaGraph(
  config: ModelConfig,
  weights: ModelWeights,
  external: ExternalDataSink | null = null,
  layout: GraphLayout = SEPARATE_OUTPUTS,
): Uint8Array {
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim: hd, vocabSize, contextLength, normEps } = config;
  const kvDim = nKvHeads * hd;
  const G = nHeads / nKvHeads;
  const g = new OnnxGraphBuilder(external);
  const resident = layout.residentKv === true;
  if (resident && layout.packedOutputs) throw new Error('a graph layout cannot both pack its outputs and keep the keys/values resident');
  const groups = layout.attentionGroups ?? 1;
  if (groups > 1 && (resident || layout.packedOutputs)) throw new Error('attention groups need host keys/values and separate outputs');
  const grouped = (name: string, elem: 'int64' | 'float', dims: (j: number) => Array<string | number>): string[] =>
    groups === 1 ? [g.input(name, elem, dims(0))] : Array.from({ length: groups }, (_, j) => g.input(groupInputName(name, j), elem, dims(j)));
  const joined = (parts: string[]): string => (parts.length === 1 ? parts[0] : g.op1('Concat', parts, { axis: 0 }));
  // Group j's dimensions are named apart (`batch_1`), so each group has its own rows and past.
  const dimOf = (name: string, j: number): string => (groups === 1 ? name : `${name}_${j}`);

  const inputIds = joined(grouped('input_ids', 'int64', (j) => [dimOf('batch', j), 'tokens']));
  const positionIds = joined(grouped('position_ids', 'int64', (j) => [dimOf('batch', j), 'tokens']));
  const masks = grouped('attention_mask', 'float', (j) => [dimOf('batch', j), 1, 'tokens', dimOf('total', j)]);
  const groupRows = groups > 1 ? g.input(GROUP_ROWS, 'int64', [groups]) : '';
  // Per layer and group, the names of its past keys and values.
  const pastK: string[][] = [];
  const pastV: string[][] = [];
  if (resident) {
    g.input(KV_STORE, 'float', ['store_rows', nKvHeads, contextLength, hd]);
    g.input(PREV_NEW_KV, 'float', ['prev_rows', nKvHeads, 'prev_tokens', hd]);
    g.input(COMMIT_SRC, 'int64', ['commits']);
    g.input(COMMIT_DST, 'int64', ['commits', 3]);
    g.input(PAST_ROWS, 'int64', ['layer_rows']);
    g.input(PAST_LENGTH, 'int64', [1]);
    g.output('logits', 'float', ['batch', 'tokens', vocabSize]);
    g.output(NEW_KV, 'float', ['layer_rows', nKvHeads, 'tokens', hd]);
    g.output(KV_STORE_OUT, 'float', ['store_rows', nKvHeads, contextLength, hd]);
    const accepted = g.op1('Gather', [g.op1('Reshape', [PREV_NEW_KV, g.ints('kv_rows_shape', [-1, hd])]), COMMIT_SRC], { axis: 0 });
    const store = g.op1('ScatterND', [KV_STORE, COMMIT_DST, accepted], {}, KV_STORE_OUT);
    const past = g.op1('Slice', [g.op1('Gather', [store, PAST_ROWS], { axis: 0 }), g.ints('past_start', [0]), PAST_LENGTH, g.ints('past_axis', [2])]);
    const parts = g.op('Split', [past], { axis: 0 }, 2 * nLayers);
    for (let l = 0; l < nLayers; l++) {
      pastK.push([parts[2 * l]]);
      pastV.push([parts[2 * l + 1]]);
    }
  } else {
    for (let l = 0; l < nLayers; l++) {
      pastK.push(grouped(pastKeyName(l), 'float', (j) => [dimOf('batch', j), nKvHeads, dimOf('past', j), hd]));
      pastV.push(grouped(pastValueName(l), 'float', (j) => [dimOf('batch', j), nKvHeads, dimOf('past', j), hd]));
    }
  }
  if (layout.packedOutputs) {
    g.output(PACKED_OUTPUTS, 'float', ['packed']);
  } else if (!resident) {
    g.output('logits', 'float', ['batch', 'tokens', vocabSize]);
    for (let l = 0; l < nLayers; l++) {
      g.output(newKeyName(l), 'float', ['batch', nKvHeads, 'tokens', hd]);
      g.output(newValueName(l), 'float', ['batch', nKvHeads, 'tokens', hd]);
    }
  }

  // Shared per forward: embeddings, RoPE factors at each token's position, the GQA-tiled mask.
  const embed = g.floats('token_embedding', [vocabSize, dim], weights.tokenEmbedding);
  let x = g.op1('Gather', [embed, inputIds], { axis: 0 });
  // RoPE factors for q's heads then k's, [contextLength, dim + kvDim]: every
  // head has the same pattern, so one table over both rotates them in one Mul-Mul-Add.
  const qkWidth = dim + kvDim;
  const rope = ropeTables(config, nHeads + nKvHeads);
  const cosQK = g.op1('Gather', [g.floats('rope_cos_qk', [contextLength, qkWidth], rope.cos), positionIds], { axis: 0 });
  const sinQK = g.op1('Gather', [g.floats('rope_sin_qk', [contextLength, qkWidth], rope.sin), positionIds], { axis: 0 });
  const maskRepeats = g.ints('mask_repeats', [1, 1, G, 1]);
  const tiledMasks = masks.map((m) => g.op1('Tile', [m, maskRepeats]));
  const byGroup = (t: string): string[] => (groups === 1 ? [t] : g.op('Split', [t, groupRows], { axis: 0 }, groups));

  const qkvSplit = g.ints('qkv_split', [qkWidth, qkWidth, kvDim]);
  const qkSplit = g.ints('qk_split', [dim, kvDim]);
  const ffnSplit = g.ints('ffn_split', [hiddenDim, hiddenDim]);
  const qShape5 = g.ints('q_shape5', [0, 0, nKvHeads, G, hd]);
  const gqaShape4 = g.ints('gqa_shape4', [0, 0, -1, hd]);
  const kShape4 = g.ints('k_shape4', [0, 0, nKvHeads, hd]);
  const outShape5 = g.ints('out_shape5', [0, 0, G, -1, hd]);
  const outShape3 = g.ints('out_shape3', [0, 0, dim]);

  // w * x / sqrt(mean(x^2) + eps)
  const rmsNorm = (v: string, name: string, w: Float32Array): string =>
    g.op1('SimplifiedLayerNormalization', [v, g.floats(name, [dim], w)], { axis: -1, epsilon: { float: normEps }, stash_type: 1 });

  const qScale = 1 / Math.sqrt(hd);
  const newKV: string[] = [];
  for (let l = 0; l < nLayers; l++) {
    const w = weights.layers[l];
    const wqkv = concatColumns(
      [
        transposeScaled(w.wq, dim, dim, qScale),
        transposeScaled(w.wk, kvDim, dim),
        transposeScaled(rotatePairs(w.wq, dim, dim), dim, dim, qScale),
        transposeScaled(rotatePairs(w.wk, kvDim, dim), kvDim, dim),
        transposeScaled(w.wv, kvDim, dim),
      ],
      dim,
      [dim, kvDim, dim, kvDim, kvDim],
    );
    const qkv = g.op1('MatMul', [rmsNorm(x, `l${l}_attn_norm`, w.attnNorm), g.floats(`l${l}_wqkv`, [dim, 2 * dim + 3 * kvDim], wqkv)]);
    const [qk0, qkr, v0] = g.op('Split', [qkv, qkvSplit], { axis: -1 }, 3);
    const [q, k] = g.op('Split', [g.op1('Add', [g.op1('Mul', [qk0, cosQK]), g.op1('Mul', [qkr, sinQK])]), qkSplit], { axis: -1 }, 2);

    // [B,T,kvH,hd] -> [B,kvH,T,hd]: the new keys/values are graph outputs.
    const newK = g.op1('Transpose', [g.op1('Reshape', [k, kShape4])], { perm: [0, 2, 1, 3] }, newKeyName(l));
    const newV = g.op1('Transpose', [g.op1('Reshape', [v0, kShape4])], { perm: [0, 2, 1, 3] }, newValueName(l));
    newKV.push(newK, newV);

    // Q: [B,T,kvH,G,hd] -> [B,kvH,G,T,hd] -> [B,kvH,G*T,hd]
    const q4 = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [q, qShape5])], { perm: [0, 2, 3, 1, 4] }), gqaShape4]);
    const [qs, ks, vs] = [byGroup(q4), byGroup(newK), byGroup(newV)];
    const attns = qs.map((qj, j) => {
      const keys = g.op1('Concat', [pastK[l][j], ks[j]], { axis: 2 });
      const values = g.op1('Concat', [pastV[l][j], vs[j]], { axis: 2 });
      const scores = g.op1('Add', [g.op1('MatMul', [qj, g.op1('Transpose', [keys], { perm: [0, 1, 3, 2] })]), tiledMasks[j]]);
      return g.op1('MatMul', [g.op1('Softmax', [scores], { axis: -1 }), values]);
    });
    const attn = joined(attns);
    // [B,kvH,G*T,hd] -> [B,kvH,G,T,hd] -> [B,T,kvH,G,hd] -> [B,T,dim]; head = kvh*G + g as in llama2.c.
    const merged = g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [attn, outShape5])], { perm: [0, 3, 1, 2, 4] }), outShape3]);
    x = g.op1('Add', [x, g.op1('MatMul', [merged, g.floats(`l${l}_wo`, [dim, dim], transposeScaled(w.wo, dim, dim))])]);

    const w13 = concatColumns(
      [transposeScaled(w.w1, hiddenDim, dim), transposeScaled(w.w3, hiddenDim, dim)],
      dim,
      [hiddenDim, hiddenDim],
    );
    const h13 = g.op1('MatMul', [rmsNorm(x, `l${l}_ffn_norm`, w.ffnNorm), g.floats(`l${l}_w13`, [dim, 2 * hiddenDim], w13)]);
    const [gate, up] = g.op('Split', [h13, ffnSplit], { axis: -1 }, 2);
    const act = g.op1('Mul', [g.op1('Mul', [gate, g.op1('Sigmoid', [gate])]), up]);
    x = g.op1('Add', [x, g.op1('MatMul', [act, g.floats(`l${l}_w2`, [hiddenDim, dim], transposeScaled(w.w2, dim, hiddenDim))])]);
  }
  const cls = transposeScaled(weights.classifier, vocabSize, dim);
  g.op1('MatMul', [rmsNorm(x, 'final_norm', weights.finalNorm), g.floats('classifier', [dim, vocabSize], cls)], {}, 'logits');
  if (resident) g.op1('Concat', newKV, { axis: 0 }, NEW_KV);
  if (layout.packedOutputs) {
    const flat = g.ints('flat_shape', [-1]);
    const parts = ['logits'];
    for (let l = 0; l < nLayers; l++) parts.push(newKeyName(l), newValueName(l));
    g.op1('Concat', parts.map((name) => g.op1('Reshape', [name, flat])), { axis: 0 }, PACKED_OUTPUTS);
  }
  return g.serialize(config.name, `sssd verification graph v${GRAPH_VERSION} for ${config.name}`);
}
