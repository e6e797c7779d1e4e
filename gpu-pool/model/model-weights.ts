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

/**
 * The first weight that is not a finite number, by tensor name and index;
 * null when all are. A checkpoint holding one (a bad conversion, a corrupt
 * copy) makes every logit NaN: the pool would start healthy and answer every
 * request with an error, so loading refuses it instead (~1 ns a weight).
 */
export function firstNonFiniteWeight(weights: ModelWeights): { tensor: string; index: number; value: number } | null {
  const tensors: Array<[string, Float32Array]> = [['tokenEmbedding', weights.tokenEmbedding]];
  weights.layers.forEach((layer, l) => {
    for (const [name, values] of Object.entries(layer) as Array<[string, Float32Array]>) tensors.push([`layers.${l}.${name}`, values]);
  });
  tensors.push(['finalNorm', weights.finalNorm]);
  if (weights.classifier !== weights.tokenEmbedding) tensors.push(['classifier', weights.classifier]);
  for (const [tensor, values] of tensors) {
    for (let i = 0; i < values.length; i++) {
      // x - x is 0 for every finite x, NaN for NaN and ±Infinity: one test, no calls.
      if (values[i] - values[i] !== 0) return { tensor, index: i, value: values[i] };
    }
  }
  return null;
}
