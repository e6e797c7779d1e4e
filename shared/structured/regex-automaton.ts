/**
 * A structured output's regex as a TextAutomaton: a lazy DFA over the
 * UTF-8 bytes of the output, built by subset construction from the byte
 * NFA only as far as texts actually go. A DFA state is the set of NFA
 * states (byte readers and the accepting one) a prefix reaches; since the
 * NFA is trimmed to states that reach acceptance (in characters the
 * tokenizer prints, where it was compiled for one that cannot print every
 * character), any non-empty set is live and the empty one is DEAD. Each state has a row of 256 next states,
 * filled byte by byte on first use, so a warm `follow` is a table lookup
 * per byte.
 */

import { AutomatonLimitError } from './automaton-limit-error';
import { type ByteNfa, DEFAULT_MAX_NFA_STATES, NfaKind, buildByteNfa } from './byte-nfa';
import { RegexSyntaxError, parseRegex } from './regex-syntax';
import { LazyDfa } from './lazy-dfa';
import { DEAD } from './text-automaton';
import type { CodePointSet } from './code-point-set';
import { quotedCharacter, UnprintableTextError } from './unprintable-text-error';

export { AutomatonLimitError } from './automaton-limit-error';
export { RegexTooLargeError } from './byte-nfa';
export { RegexSyntaxError } from './regex-syntax';
export { UnprintableTextError } from './unprintable-text-error';

/**
 * An automaton's own bounds over its life, shared by every request that uses
 * it: a safety net for memory (80 MB of table) and time. Each request is
 * held to a quarter of them (TextMasks' REQUEST_* bounds), so a few at once
 * fit under them.
 */
export const DEFAULT_MAX_DFA_STATES = 80_000;
/**
 * NFA states visited building DFA states (closures, and the members each
 * step reads), at most, over the automaton's life. The states' count bounds
 * memory, not time: a pattern of long optional runs, `(?:[a-z ]?){1000}`
 * three times, made each new state walk thousands of NFA states, and held
 * the pool's one thread for seconds.
 */
export const DEFAULT_MAX_BUILD_WORK = 40_000_000;

export interface RegexLimits {
  /** NFA states a pattern may spell out (counted repeats copied); past it, RegexTooLargeError. */
  readonly maxNfaStates?: number;
  /** DFA states the automaton may reach; past it, AutomatonLimitError. */
  readonly maxDfaStates?: number;
  /** NFA states visited building them, at most; past it, AutomatonLimitError. */
  readonly maxBuildWork?: number;
}

/** Parses and builds the NFA only: cheap enough for the edge to refuse a bad pattern with a 400. */
export function checkRegex(pattern: string, limits: RegexLimits = {}): void {
  regexNfa(pattern, limits);
}

/**
 * `printable`: the characters the tokenizer can print (TokenTexts), or null
 * for all: the automaton keeps only the states from which a match of those
 * characters goes on (byte-nfa.ts's NfaBuilder). A pattern no such match
 * satisfies is an UnprintableTextError.
 */
export function compileRegex(pattern: string, limits: RegexLimits = {}, printable: CodePointSet | null = null): RegexAutomaton {
  return new RegexAutomaton(regexNfa(pattern, limits, printable), limits.maxDfaStates ?? DEFAULT_MAX_DFA_STATES, limits.maxBuildWork ?? DEFAULT_MAX_BUILD_WORK);
}

function regexNfa(pattern: string, limits: RegexLimits, printable: CodePointSet | null = null): ByteNfa {
  const nfa = buildByteNfa(parseRegex(pattern), limits.maxNfaStates ?? DEFAULT_MAX_NFA_STATES, printable);
  if (!nfa.matchesSomething) throw new RegexSyntaxError('the pattern matches no text at all, so no output could satisfy it', 0);
  if (!nfa.printsSomething) throw new UnprintableTextError('no match of the regex', nfa.unprintableExamples.map(quotedCharacter));
  return nfa;
}

export class RegexAutomaton extends LazyDfa<Int32Array> {
  readonly what = 'regex';
  // Scratch for closures: a visit stamp per NFA state, a stack, the members found.
  private readonly seen: Int32Array;
  private stamp = 0;
  private readonly stack: Int32Array;
  private readonly members: Int32Array;
  /** anyTail's answer by state, found once. */
  private readonly anyTails: Array<boolean | undefined> = [];

  constructor(
    private readonly nfa: ByteNfa,
    maxStates: number,
    maxWork: number = DEFAULT_MAX_BUILD_WORK,
  ) {
    super(maxStates, maxWork);
    this.seen = new Int32Array(nfa.stateCount);
    // Per closure: the seeds (one per member at most) and two ways out of each state visited once.
    this.stack = new Int32Array(nfa.stateCount * 3 + 1);
    this.members = new Int32Array(nfa.stateCount);
    this.stack[0] = nfa.start;
    this.closure(1); // state 0: the empty text's
  }

  protected readBytes(set: Int32Array, taken: Uint8Array): void {
    const nfa = this.nfa;
    for (const q of set) {
      if (nfa.kind[q] !== NfaKind.Byte || nfa.out1[q] < 0) continue;
      taken.fill(1, nfa.lo[q], nfa.hi[q] + 1);
    }
  }

  /** Whether the text at `state` takes every continuation: it holds a `(?any-tail)` reader (byte-nfa.ts). */
  anyTail(state: number): boolean {
    if (state < 0) return false;
    let known = this.anyTails[state];
    if (known === undefined) {
      known = false;
      for (const q of this.sets[state]) if (this.nfa.anyTail[q] === 1) known = true;
      this.anyTails[state] = known;
    }
    return known;
  }

  protected acceptsSet(set: Int32Array): boolean {
    for (const q of set) if (this.nfa.kind[q] === NfaKind.Accept) return true;
    return false;
  }

  protected successor(set: Int32Array, b: number): number {
    const nfa = this.nfa;
    let top = 0;
    this.charge(set.length);
    for (const q of set) {
      if (nfa.kind[q] === NfaKind.Byte && nfa.lo[q] <= b && b <= nfa.hi[q] && nfa.out1[q] >= 0) this.stack[top++] = nfa.out1[q];
    }
    return this.closure(top);
  }

  /** The state of the states reachable without reading from the `top` seeds on the stack: found or made. */
  private closure(top: number): number {
    const nfa = this.nfa;
    const seen = this.seen;
    const stack = this.stack;
    const stamp = ++this.stamp;
    let count = 0;
    let visited = 0;
    while (top > 0) {
      const q = stack[--top];
      if (seen[q] === stamp) continue;
      seen[q] = stamp;
      visited++;
      if (nfa.kind[q] === NfaKind.Epsilon) {
        if (nfa.out2[q] >= 0) stack[top++] = nfa.out2[q];
        if (nfa.out1[q] >= 0) stack[top++] = nfa.out1[q];
      } else this.members[count++] = q;
    }
    this.charge(visited);
    if (count === 0) return DEAD;
    return this.intern(this.members.subarray(0, count).sort());
  }
}
