/**
 * vLLM's `structured_outputs.choice` (and `guided_choice`) as a language: the
 * output's text must be one of the request's choices. vLLM compiles them into
 * the grammar `root ::= "a" | "b"` (vllm/v1/structured_output/utils.py,
 * choice_as_grammar); here a byte trie of the choices' UTF-8 is the automaton:
 * a state per prefix of a choice, accepting where it is a whole one. Only
 * the choices the tokenizer can print (every character of them printed by
 * some token) are in it, so every node leads to a whole choice made of such
 * characters: every state is live.
 */
import { hasCodePoint, type CodePointSet } from './code-point-set';
import { DEAD, type TextAutomaton } from './text-automaton';
import { quotedCharacter, UnprintableTextError } from './unprintable-text-error';

const utf8 = new TextEncoder();

export class ChoiceTrie implements TextAutomaton {
  /** node * 256 + byte → child node. */
  private readonly edges = new Map<number, number>();
  /** Per node: 1 where its text is a whole choice. */
  readonly whole: Uint8Array;
  /** Per node: the bytes that go on from it, ascending. */
  private readonly childBytes: readonly (readonly number[])[];

  /**
   * `printable`: the characters the tokenizer prints, or null for all: a
   * choice with another character is left out (no output could be it), and
   * where that leaves none, an UnprintableTextError naming what each needs.
   */
  constructor(choices: readonly string[], printable: CodePointSet | null = null) {
    const whole: number[] = [0];
    const childBytes: number[][] = [[]];
    const needed: string[] = [];
    let kept = 0;
    for (const choice of choices) {
      if (printable !== null) {
        const missing = firstUnprintable(choice, printable);
        if (missing !== undefined) {
          if (needed.length < 3) needed.push(`${quotedCharacter(missing)} in ${JSON.stringify(choice)}`);
          continue;
        }
      }
      kept++;
      let node = 0;
      for (const byte of utf8.encode(choice)) {
        const key = node * 256 + byte;
        let child = this.edges.get(key);
        if (child === undefined) {
          child = whole.length;
          whole.push(0);
          childBytes.push([]);
          childBytes[node].push(byte);
          this.edges.set(key, child);
        }
        node = child;
      }
      whole[node] = 1;
    }
    if (kept === 0 && choices.length > 0) throw new UnprintableTextError('none of the choices', needed);
    this.whole = Uint8Array.from(whole);
    for (const bytes of childBytes) bytes.sort((a, b) => a - b);
    this.childBytes = childBytes;
  }

  get nodes(): number {
    return this.whole.length;
  }

  follow(node: number, table: Uint8Array, start: number, end: number): number {
    for (let i = start; i < end && node !== DEAD; i++) node = this.edges.get(node * 256 + table[i]) ?? DEAD;
    return node;
  }

  accepting(node: number): boolean {
    return node !== DEAD && this.whole[node] === 1;
  }

  nextBytes(node: number): readonly number[] {
    return node === DEAD ? [] : this.childBytes[node];
  }
}

/** The first character of `text` outside `printable`, or undefined. */
function firstUnprintable(text: string, printable: CodePointSet): number | undefined {
  for (const char of text) {
    const cp = char.codePointAt(0)!;
    if (!hasCodePoint(printable, cp)) return cp;
  }
  return undefined;
}
