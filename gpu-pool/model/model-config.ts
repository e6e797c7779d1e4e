/**
 * The canonical description of a llama-family model, whatever file it came
 * from. Loaders (llama2.c `.bin`, Hugging Face directories) produce it; the
 * graph builder, the reference forward pass and the pool consume it.
 */
export interface ModelConfig {
  /** Human-readable name (file or directory base name). */
  name: string;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** dim / nHeads. */
  headDim: number;
  vocabSize: number;
  /** Maximum context length (positions 0 .. contextLength-1). */
  contextLength: number;
  ropeTheta: number;
  normEps: number;
  /** Token id prepended to every prompt. */
  bosId: number;
  /** Generation ends when any of these is produced (llama2.c models: [1]). */
  eosIds: number[];
}
