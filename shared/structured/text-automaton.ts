/**
 * A language over the output's text, as a deterministic automaton over its
 * UTF-8 bytes: the pool masks every token whose bytes would take the text
 * out of the language's prefixes, and the end ids until the text is a whole
 * sentence of it (gpu-pool/verify/text-masks.ts). vLLM's structured outputs
 * (choice, regex, JSON schema, JSON object) are each one such language.
 *
 * States are small non-negative integers, 0 the empty text's. An
 * implementation keeps every state it returns live: some bytes lead from it
 * to an accepting state. Built for a tokenizer that cannot print every
 * character (TokenTexts.printable), those bytes are characters it prints, so
 * a text the masks let through can be finished by tokens where each such
 * character is some token's whole text (else the masks search for tokens
 * that finish it: text-masks.ts).
 */

/** The state outside the language's prefixes (bytes left it). */
export const DEAD = -1;
/** followBuilt's answer where the state is not built yet. */
export const UNBUILT = -2;

export interface TextAutomaton {
  /** The state after `bytes[start..end)` from `state`; DEAD where they leave the language's prefixes (and from DEAD). */
  follow(state: number, bytes: Uint8Array, start: number, end: number): number;
  /** Whether the text at `state` is a whole sentence of the language (the generation may end there). */
  accepting(state: number): boolean;
  /** The bytes that lead from `state` to a live state, ascending: a token starting with any other byte is never looked at. */
  nextBytes(state: number): readonly number[];
  /**
   * An automaton built as the text reaches its states (a lazy DFA): its
   * building work so far, its states, and `follow` over the states already
   * built alone (UNBUILT past them). Absent: nothing is built on the way.
   */
  readonly workDone?: number;
  /** Bounds the calls that follow at `budget` more building work (AutomatonLimitError naming `limit` past it), until clearWorkBudget. */
  setWorkBudget?(budget: number, limit: number): void;
  clearWorkBudget?(): void;
  /** What it follows, as a limit's error names it ('regex', 'grammar'). */
  readonly what?: string;
  readonly stateCount?: number;
  followBuilt?(state: number, bytes: Uint8Array, start: number, end: number): number;
  /**
   * Whether every continuation of the text at `state` is in the language
   * (a regex's `(?any-tail)` reached): the pool lifts the mask there, any
   * token taken, those that print nothing included. Absent: never.
   */
  anyTail?(state: number): boolean;
}
