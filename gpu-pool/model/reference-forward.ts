/**
 * A plain TypeScript forward pass, as readable as llama2.c's `forward()`:
 * one sequence, one token at a time, its own KV cache. It exists to check the
 * ONNX graph numerically (tests), not to serve.
 */
import type { ModelConfig } from './model-config';
import type { ModelWeights } from './model-weights';

function rmsNorm(out: Float32Array, x: Float32Array, w: Float32Array, eps: number): void {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = w[i] * (scale * x[i]);
}

/** out[rows] = W[rows, cols] x[cols] */
function matmul(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    let v = 0;
    for (let c = 0; c < cols; c++) v += w[r * cols + c] * x[c];
    out[r] = v;
  }
}

export class ReferenceForward {
  private readonly keyCache: Float32Array; // [layer][pos][kvDim]
  private readonly valueCache: Float32Array;
  private position = 0;

  constructor(
    readonly config: ModelConfig,
    private readonly weights: ModelWeights,
  ) {
    const kvDim = config.nKvHeads * config.headDim;
    this.keyCache = new Float32Array(config.nLayers * config.contextLength * kvDim);
    this.valueCache = new Float32Array(this.keyCache.length);
  }

  get length(): number {
    return this.position;
  }

  /** Feeds `token` at the next position; returns the logits for the token after it. */
  forward(token: number): Float32Array {
    const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim: hd, vocabSize, contextLength, ropeTheta, normEps } = this.config;
    const w = this.weights;
    const pos = this.position;
    if (pos >= contextLength) throw new RangeError('reference forward: context full');
    const kvDim = nKvHeads * hd;
    const kvMul = nHeads / nKvHeads;

    const x = w.tokenEmbedding.slice(token * dim, (token + 1) * dim);
    const xb = new Float32Array(dim);
    const xb2 = new Float32Array(dim);
    const q = new Float32Array(dim);
    const hb = new Float32Array(hiddenDim);
    const hb2 = new Float32Array(hiddenDim);
    const att = new Float32Array(pos + 1);

    for (let l = 0; l < nLayers; l++) {
      const lw = w.layers[l];
      rmsNorm(xb, x, lw.attnNorm, normEps);
      const kOff = (l * contextLength + pos) * kvDim;
      const k = this.keyCache.subarray(kOff, kOff + kvDim);
      const v = this.valueCache.subarray(kOff, kOff + kvDim);
      matmul(q, xb, lw.wq, dim, dim);
      matmul(k, xb, lw.wk, kvDim, dim);
      matmul(v, xb, lw.wv, kvDim, dim);

      // RoPE, llama2.c style: rotate adjacent pairs (i, i+1) of each head.
      for (let i = 0; i < dim; i += 2) {
        const freq = 1 / Math.pow(ropeTheta, (i % hd) / hd);
        const angle = pos * freq;
        const fcr = Math.cos(angle);
        const fci = Math.sin(angle);
        const vecs = i < kvDim ? [q, k] : [q];
        for (const vec of vecs) {
          const v0 = vec[i];
          const v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }

      // Multi-head attention over positions 0..pos; head h reads kv head h / kvMul.
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / kvMul);
        let max = -Infinity;
        for (let t = 0; t <= pos; t++) {
          const kt = (l * contextLength + t) * kvDim + kvh * hd;
          let score = 0;
          for (let i = 0; i < hd; i++) score += q[h * hd + i] * this.keyCache[kt + i];
          att[t] = score / Math.sqrt(hd);
          if (att[t] > max) max = att[t];
        }
        let sum = 0;
        for (let t = 0; t <= pos; t++) {
          att[t] = Math.exp(att[t] - max);
          sum += att[t];
        }
        for (let i = 0; i < hd; i++) xb[h * hd + i] = 0;
        for (let t = 0; t <= pos; t++) {
          const vt = (l * contextLength + t) * kvDim + kvh * hd;
          const a = att[t] / sum;
          for (let i = 0; i < hd; i++) xb[h * hd + i] += a * this.valueCache[vt + i];
        }
      }
      matmul(xb2, xb, lw.wo, dim, dim);
      for (let i = 0; i < dim; i++) x[i] += xb2[i];

      // SwiGLU feed-forward: w2(silu(w1 x) * w3 x).
      rmsNorm(xb, x, lw.ffnNorm, normEps);
      matmul(hb, xb, lw.w1, hiddenDim, dim);
      matmul(hb2, xb, lw.w3, hiddenDim, dim);
      for (let i = 0; i < hiddenDim; i++) hb[i] = (hb[i] / (1 + Math.exp(-hb[i]))) * hb2[i];
      matmul(xb, hb, lw.w2, dim, hiddenDim);
      for (let i = 0; i < dim; i++) x[i] += xb[i];
    }
    rmsNorm(x, x, w.finalNorm, normEps);
    const logits = new Float32Array(vocabSize);
    matmul(logits, x, w.classifier, vocabSize, dim);
    this.position++;
    return logits;
  }
}
