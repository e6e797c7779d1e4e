/**
 * Logit bias and repetition, frequency and presence penalties (OpenAI's and
 * vLLM's), applied to the logits at each node the verifier visits. A node's
 * history is the generation's output so far plus the draft tokens on the path
 * from the root down to it, so a penalised step accepts exactly what plain
 * decoding with the same settings would emit: the drafts stay as they are,
 * only the targets they are checked against change.
 *
 * As vLLM orders them: the bias first (added to its tokens' logits), then the
 * repetition penalty (every token seen in the prompt or the output: a
 * positive logit divided by it, a negative one multiplied), then frequency
 * (minus penalty × times generated) and presence (minus penalty once
 * generated). Temperature and top-p/top-k come after, in the sampler.
 *
 * And vLLM's `min_tokens`: the ids that would end the generation (the end
 * token, the request's stop token ids) are masked while the output, the
 * path's tokens counted, is shorter than that; and its `allowed_token_ids`:
 * every other id masked, at every node.
 */
export interface LogitAdjustmentSettings {
  frequencyPenalty: number;
  presencePenalty: number;
  repetitionPenalty: number;
  /** Added to the logits of these token ids (OpenAI's `logit_bias`, keys as decimal strings). */
  logitBias?: Readonly<Record<string, number>>;
}

/** What a request masks: the ids that end it, until its output holds `minTokens` tokens; every id outside `allowed`, where it names one. */
export interface TokenMasks {
  ids: readonly number[];
  minTokens: number;
  allowed?: readonly number[];
}

function penalises(s: LogitAdjustmentSettings): boolean {
  return s.frequencyPenalty !== 0 || s.presencePenalty !== 0 || s.repetitionPenalty !== 1 || (s.logitBias !== undefined && Object.keys(s.logitBias).length > 0);
}

export function hasLogitAdjustments(s: LogitAdjustmentSettings, ends?: TokenMasks): boolean {
  return penalises(s) || (ends !== undefined && ((ends.minTokens > 0 && ends.ids.length > 0) || ends.allowed !== undefined));
}

export class LogitAdjustments {
  /** Times each token was generated (the path's tokens added while a node is scored). */
  private readonly counts: Int32Array;
  private readonly inPrompt: Uint8Array;
  /** Distinct tokens of the prompt, and of the output, in first-seen order. */
  private readonly promptTokens: number[] = [];
  private readonly outputTokens: number[] = [];
  private readonly scratch: Float32Array;
  /** Which tokens apply() has penalised in its current call (stamped with `epoch`). */
  private readonly stamp: Uint32Array;
  private epoch = 0;
  private readonly biasIds: Int32Array;
  private readonly biasValues: Float32Array;
  private readonly penalising: boolean;
  private readonly endIds: Int32Array;
  private readonly minTokens: number;
  /** Ids outside the request's allowed list (vLLM's allowed_token_ids), masked at every node; null = every id allowed. */
  private readonly disallowed: Int32Array | null;
  /** Tokens observed (the output so far). */
  private outputLength = 0;

  constructor(
    readonly settings: LogitAdjustmentSettings,
    vocabSize: number,
    promptIds: ArrayLike<number>,
    ends?: TokenMasks,
  ) {
    this.penalising = penalises(settings);
    this.endIds = Int32Array.from(ends?.ids ?? []);
    this.minTokens = ends?.minTokens ?? 0;
    if (ends?.allowed) {
      const allowed = new Uint8Array(vocabSize);
      for (const id of ends.allowed) allowed[id] = 1;
      const out: number[] = [];
      for (let id = 0; id < vocabSize; id++) if (!allowed[id]) out.push(id);
      this.disallowed = Int32Array.from(out);
    } else this.disallowed = null;
    this.counts = new Int32Array(vocabSize);
    this.inPrompt = new Uint8Array(vocabSize);
    this.scratch = new Float32Array(vocabSize);
    this.stamp = new Uint32Array(vocabSize);
    const bias = Object.entries(settings.logitBias ?? {});
    this.biasIds = Int32Array.from(bias, ([id]) => Number(id));
    this.biasValues = Float32Array.from(bias, ([, b]) => b);
    for (const id of this.biasIds) if (!(id >= 0 && id < vocabSize)) throw new RangeError(`logit bias for token ${id}, outside the vocabulary (size ${vocabSize})`);
    for (let i = 0; i < promptIds.length; i++) {
      const t = promptIds[i];
      if (!this.inPrompt[t]) {
        this.inPrompt[t] = 1;
        this.promptTokens.push(t);
      }
    }
  }

  /** One emitted token joins the output. */
  observe(token: number): void {
    this.outputLength++;
    if (this.counts[token]++ === 0) this.outputTokens.push(token);
  }

  /**
   * The penalised logits of a node whose path from the root carries
   * `rowTokens[path[0..depth)]` (written into scratch owned by this object;
   * valid until the next call; `logits` itself where nothing applies to
   * it). `logits` is not modified.
   */
  apply(logits: Float32Array, rowTokens: ArrayLike<number>, path: ArrayLike<number>, depth: number): Float32Array {
    const withheld = this.outputLength + depth < this.minTokens;
    const { disallowed } = this;
    // Past min_tokens, without penalties or an allowed list: the logits as they are, no copy.
    if (!this.penalising && !withheld && disallowed === null) return logits;
    const out = this.scratch;
    out.set(logits);
    if (withheld) for (let i = 0; i < this.endIds.length; i++) out[this.endIds[i]] = -Infinity;
    if (disallowed !== null) for (let i = 0; i < disallowed.length; i++) out[disallowed[i]] = -Infinity;
    if (!this.penalising) return out;
    for (let i = 0; i < this.biasIds.length; i++) out[this.biasIds[i]] += this.biasValues[i];
    const { counts, stamp } = this;
    const { repetitionPenalty } = this.settings;
    for (let i = 0; i < depth; i++) counts[rowTokens[path[i]]]++;
    // Each token of prompt ∪ output ∪ path once (stamped with this call's epoch).
    if (this.epoch === 0xffffffff) {
      stamp.fill(0);
      this.epoch = 0;
    }
    ++this.epoch;
    if (repetitionPenalty !== 1) for (const t of this.promptTokens) this.penalise(out, t);
    for (const t of this.outputTokens) this.penalise(out, t);
    for (let i = 0; i < depth; i++) this.penalise(out, rowTokens[path[i]]);
    for (let i = 0; i < depth; i++) counts[rowTokens[path[i]]]--;
    return out;
  }

  /** Penalises token `t` in `out`, once per apply() call (stamped with its epoch). */
  private penalise(out: Float32Array, t: number): void {
    if (this.stamp[t] === this.epoch) return;
    this.stamp[t] = this.epoch;
    const { frequencyPenalty, presencePenalty, repetitionPenalty } = this.settings;
    const c = this.counts[t];
    if (repetitionPenalty !== 1 && (c > 0 || this.inPrompt[t])) out[t] = out[t] > 0 ? out[t] / repetitionPenalty : out[t] * repetitionPenalty;
    if (c > 0) out[t] -= frequencyPenalty * c + presencePenalty;
  }
}
