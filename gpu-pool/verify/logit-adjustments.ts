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
 * every other id masked, at every node. And its `bad_words` (as token-id
 * sequences): the last id of a sequence is masked where the node's history,
 * output and path, ends in the sequence's other ids (vLLM matches the output
 * alone, never the prompt). And its structured outputs (choice, regex, JSON):
 * every id that would take the node's text (output and path) out of the
 * language is masked, the end ids too until it is a whole sentence of it
 * (text-masks.ts).
 */
import type { TextMasks } from './text-masks';

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
  /** vLLM's bad words as token-id sequences: each one's last id masked after its others (output only). */
  badWords?: readonly (readonly number[])[];
  /** vLLM's structured outputs: the text must stay inside a language, and end only where it is a whole sentence of it. */
  text?: TextMasks;
}

/** Bad words, packed: their ids end to end, where each starts (one more entry: the end), and the output's last tokens, as many as the longest word less one, in a ring (the output's token i at i % length). */
interface BadWordTable {
  tokens: Int32Array;
  starts: Int32Array;
  recent: Int32Array;
}

function penalises(s: LogitAdjustmentSettings): boolean {
  return s.frequencyPenalty !== 0 || s.presencePenalty !== 0 || s.repetitionPenalty !== 1 || (s.logitBias !== undefined && Object.keys(s.logitBias).length > 0);
}

export function hasLogitAdjustments(s: LogitAdjustmentSettings, ends?: TokenMasks): boolean {
  return penalises(s) || (ends !== undefined && ((ends.minTokens > 0 && ends.ids.length > 0) || ends.allowed !== undefined || (ends.badWords?.length ?? 0) > 0 || ends.text !== undefined));
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
  /** The request's bad words; null = none. */
  private readonly badWords: BadWordTable | null = null;
  /** The request's structured output, and scratch for the logits it keeps (vocabulary-sized); null = none. */
  private readonly text: TextMasks | null;
  private readonly kept: Float32Array;

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
    const bad = ends?.badWords ?? [];
    if (bad.length > 0) {
      const starts = new Int32Array(bad.length + 1);
      for (let w = 0; w < bad.length; w++) starts[w + 1] = starts[w] + bad[w].length;
      const tokens = Int32Array.from(bad.flat());
      for (const id of tokens) if (!(id >= 0 && id < vocabSize)) throw new RangeError(`bad word token ${id}, outside the vocabulary (size ${vocabSize})`);
      // At least one entry: a ring of one-token words alone is written and never read.
      this.badWords = { tokens, starts, recent: new Int32Array(Math.max(1, ...bad.map((w) => w.length - 1))) };
    }
    this.text = ends?.text ?? null;
    this.kept = new Float32Array(this.text ? vocabSize : 0);
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
    const recent = this.badWords?.recent;
    if (recent) recent[this.outputLength % recent.length] = token;
    this.outputLength++;
    this.text?.observe(token);
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
    const { badWords } = this;
    const banning = badWords !== null && this.bans(badWords, null, rowTokens, path, depth);
    const { text } = this;
    // Past min_tokens, without penalties, an allowed list, a structured output or a bad word to mask here: the logits as they are, no copy.
    if (!this.penalising && !withheld && disallowed === null && !banning && text === null) return logits;
    const out = this.scratch;
    out.set(logits);
    const state = text !== null ? text.stateAt(rowTokens, path, depth) : 0;
    // min_tokens holds the end ids back, except where a structured output is written whole and its language lets
    // nothing but the end follow (a tool call's closed array): the output's end wins there, not a generation left
    // with no token. Where the language lets more text follow, the other masks leaving none is the request's 400.
    if (withheld && !(text !== null && text.endsOnlyAt(state))) for (let i = 0; i < this.endIds.length; i++) out[this.endIds[i]] = -Infinity;
    if (disallowed !== null) for (let i = 0; i < disallowed.length; i++) out[disallowed[i]] = -Infinity;
    if (banning) this.bans(badWords, out, rowTokens, path, depth);
    if (text !== null) text.mask(out, state, this.kept);
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

  /**
   * Whether a bad word's last id is banned at the node (its other ids end the
   * history: the output, then `rowTokens[path[0..depth)]`); with `out`, every
   * such id is masked there, else the first one found answers.
   */
  private bans({ tokens, starts, recent }: BadWordTable, out: Float32Array | null, rowTokens: ArrayLike<number>, path: ArrayLike<number>, depth: number): boolean {
    const { outputLength } = this;
    let any = false;
    for (let w = 0; w + 1 < starts.length; w++) {
      const last = starts[w + 1] - 1;
      const before = last - starts[w];
      // vLLM's rule: a word longer than the history and the next token is skipped.
      if (before > outputLength + depth) continue;
      let k = 0;
      // k back from the history's end: the path's tokens first, then the output's (the ring holds enough of them).
      for (; k < before; k++) {
        const seen = k < depth ? rowTokens[path[depth - 1 - k]] : recent[(outputLength - 1 - (k - depth)) % recent.length];
        if (seen !== tokens[last - 1 - k]) break;
      }
      if (k < before) continue;
      if (out === null) return true;
      out[tokens[last]] = -Infinity;
      any = true;
    }
    return any;
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
