/**
 * Packs documents (token sequences) into chunk-sized token arrays with the
 * datastore's layout: every document starts with the separator (BOS, id 1 in
 * the llama2.c models) and exactly one separator sits between two documents,
 * so a continuation that reaches the end of a story yields the separator and
 * stops there, as the model itself would.
 */

export class ChunkPacker {
  private readonly done: Int32Array[] = [];
  private current: Int32Array;
  private length = 0;
  private total = 0;

  /**
   * @param start the current last chunk, to be extended (live appends); its
   *   extended copy is always the first chunk `finish` returns.
   */
  constructor(
    private readonly separatorId: number,
    private readonly chunkTokens: number,
    start: Int32Array | null = null,
  ) {
    if (!Number.isInteger(chunkTokens) || chunkTokens < 2) throw new RangeError(`chunkTokens must be an integer >= 2, got ${chunkTokens}`);
    this.current = new Int32Array(Math.max(start?.length ?? 0, Math.min(chunkTokens, 1 << 16)));
    if (start && start.length > 0) {
      this.current.set(start);
      this.length = start.length;
      this.total = start.length;
    }
  }

  /** Tokens packed so far, separators included. */
  get tokenCount(): number {
    return this.total;
  }

  add(doc: ArrayLike<number>): void {
    const sep = this.separatorId;
    let from = 0;
    while (from < doc.length && doc[from] === sep) from++; // the layout adds exactly one
    const body = doc.length - from;
    if (body === 0) return;
    const endsWithSeparator = this.length > 0 && this.current[this.length - 1] === sep;
    const needed = body + (endsWithSeparator ? 0 : 1);
    if (this.length > 0 && this.length + needed > this.chunkTokens) this.closeCurrent();
    if (this.length === 0 || this.current[this.length - 1] !== sep) this.push(sep);
    for (let i = from; i < doc.length; i++) {
      if (this.length >= this.chunkTokens) this.closeCurrent(); // a document longer than a chunk is split
      this.push(doc[i]);
    }
  }

  /** All chunks, in order (the extended `start` first when one was given). */
  finish(): Int32Array[] {
    if (this.length > 0) this.done.push(this.current.slice(0, this.length));
    this.length = 0;
    return this.done;
  }

  private push(token: number): void {
    if (this.length === this.current.length) {
      const grown = new Int32Array(Math.min(Math.max(this.chunkTokens, this.length + 1), this.current.length * 2 || 16));
      grown.set(this.current.subarray(0, this.length));
      this.current = grown;
    }
    this.current[this.length++] = token;
    this.total++;
  }

  private closeCurrent(): void {
    this.done.push(this.current.slice(0, this.length));
    this.current = new Int32Array(Math.min(this.chunkTokens, 1 << 16));
    this.length = 0;
  }
}
