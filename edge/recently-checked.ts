/**
 * Texts checked lately (regexes, grammars), least recent first, within a
 * count and a total length: a schema or grammar sent with every request
 * costs milliseconds of CPU to check (its automaton's first states built),
 * once per isolate rather than once a request.
 */
export class RecentlyChecked {
  private readonly texts = new Set<string>();
  private chars = 0;

  constructor(
    private readonly maxTexts: number,
    private readonly maxChars: number,
  ) {}

  /** Whether `text` was checked lately; a hit becomes the most recent, so what is sent with every request stays. */
  has(text: string): boolean {
    if (!this.texts.has(text)) return false;
    this.texts.delete(text);
    this.texts.add(text);
    return true;
  }

  /** Remembers a text that passed, dropping the least recent past the bounds. */
  add(text: string): void {
    this.texts.add(text);
    this.chars += text.length;
    for (const old of this.texts) {
      if (this.texts.size <= this.maxTexts && this.chars <= this.maxChars) break;
      this.texts.delete(old);
      this.chars -= old.length;
    }
  }
}
