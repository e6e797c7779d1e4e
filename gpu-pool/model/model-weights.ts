/**
 * The canonical in-memory weights of a llama-family model, whatever file they
 * came from. Matrices are row-major [out, in] (as llama2.c stores them, so
 * y = W x). q/k rows follow the llama2.c RoPE convention: dimensions (2i, 2i+1)
 * of each head form one rotated pair; loaders of other formats convert to it.
 */
export interface LayerWeights {
  attnNorm: Float32Array; // [dim]
  wq: Float32Array; // [dim, dim]
  wk: Float32Array; // [kvDim, dim]
  wv: Float32Array; // [kvDim, dim]
  wo: Float32Array; // [dim, dim]
  ffnNorm: Float32Array; // [dim]
  w1: Float32Array; // [hidden, dim] (gate)
  w2: Float32Array; // [dim, hidden] (down)
  w3: Float32Array; // [hidden, dim] (up)
}

export interface ModelWeights {
  tokenEmbedding: Float32Array; // [vocab, dim]
  layers: LayerWeights[];
  finalNorm: Float32Array; // [dim]
  /** [vocab, dim]; the same array as tokenEmbedding when tied. */
  classifier: Float32Array;
}
