/**
 * Texts checked or written lately (regexes, grammars, a schema's written
 * form), least recent first, within a count and a total length: a schema or
 * grammar sent with every request costs milliseconds of CPU to check (its
 * automaton's first states built) and up to ~0.35 ms to write as a grammar,
 * once per isolate rather than once a request.
 */
export class RecentTexts<V extends string | true> {
  private readonly entries = new Map<string, V>();
  private chars = 0;

  constructor(
    private readonly maxTexts: number,
    private readonly maxChars: number,
  ) {}

  /** The value kept for `key`; a hit becomes the most recent, so what is sent with every request stays. */
  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, value);
    return value;
  }

  /** Keeps `value` for `key`, dropping the least recent past the bounds. */
  set(key: string, value: V): void {
    if (this.entries.has(key)) return;
    this.entries.set(key, value);
    this.chars += charsOf(key, value);
    for (const [old, oldValue] of this.entries) {
      if (this.entries.size <= this.maxTexts && this.chars <= this.maxChars) break;
      this.entries.delete(old);
      this.chars -= charsOf(old, oldValue);
    }
  }
}

function charsOf(key: string, value: string | true): number {
  return key.length + (value === true ? 0 : value.length);
}

/** Texts that passed a check lately. */
export class RecentlyChecked {
  private readonly texts: RecentTexts<true>;

  constructor(maxTexts: number, maxChars: number) {
    this.texts = new RecentTexts(maxTexts, maxChars);
  }

  /** Whether `text` was checked lately (and keeps it, as the most recent). */
  has(text: string): boolean {
    return this.texts.get(text) !== undefined;
  }

  /** Remembers a text that passed. */
  add(text: string): void {
    this.texts.set(text, true);
  }
}
