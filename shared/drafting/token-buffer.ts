/** A growable Int32Array of tokens: the request's prompt plus accepted output. */
export class TokenBuffer {
  data: Int32Array;
  length = 0;

  constructor(initial: ArrayLike<number> = [], capacity = 256) {
    this.data = new Int32Array(Math.max(capacity, initial.length * 2, 16));
    this.pushAll(initial);
  }

  push(token: number): void {
    if (this.length === this.data.length) {
      const next = new Int32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = token;
  }

  pushAll(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) this.push(tokens[i]);
  }

  get last(): number {
    return this.length > 0 ? this.data[this.length - 1] : 0;
  }

  /** A view of the last n tokens (no copy). */
  tail(n: number): Int32Array {
    return this.data.subarray(Math.max(0, this.length - n), this.length);
  }
}
