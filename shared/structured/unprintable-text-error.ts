/**
 * A structured output no text of which the tokenizer can write: every way
 * to a whole sentence (a choice, a match, a sentence of the grammar) needs a
 * character none of its tokens prints (a vocabulary without byte fallback,
 * as babyllama105's, has no `{`). The pool refuses the request with a 400
 * before generating, rather than let the model write a start that nothing
 * can finish.
 */
export class UnprintableTextError extends Error {
  /** `what`: the subject, as the message starts ('no match of the regex'); `examples`: what it needs that no token prints, as the message names it. */
  constructor(what: string, examples: readonly string[]) {
    const named = examples.length === 0 ? '' : ` (${examples.join(', ')})`;
    super(`${what} can be written with this model's tokenizer: each needs a character that none of its tokens prints${named}`);
    this.name = 'UnprintableTextError';
  }
}

/** A character as a message names it: in JSON's quotes, so a newline or a tab shows. */
export function quotedCharacter(codePoint: number): string {
  return JSON.stringify(String.fromCodePoint(codePoint));
}
