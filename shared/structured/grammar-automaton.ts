/**
 * A structured output's GBNF grammar as a TextAutomaton: a lazy
 * deterministic automaton over the output's UTF-8 bytes, built as
 * RegexAutomaton is, only as far as texts go. Its states are
 * configurations: the set of (NFA position, return stack) a prefix reaches,
 * positions being byte readers (and root's end with nothing to return to,
 * the accepting one), stacks the calls the position returns through, kept
 * as a hash-consed tree of (return position, parent stack) nodes, so equal
 * stacks are one number and a configuration holds a pair per member.
 * Closures go through calls (push) and rule ends (pop); they are finite as
 * no rule is left-recursive (grammar-nfa.ts). Every reachable rule derives
 * some text and the NFA is trimmed to positions that reach their rule's
 * end (in characters the tokenizer prints, where it was compiled for one
 * that cannot print every character: grammar-nfa.ts), so any non-empty
 * configuration is live and the empty one is DEAD.
 * The table, the interning and the limits are LazyDfa's (lazy-dfa.ts), as
 * a regex's are.
 *
 * A configuration is as large as the prefix needs (a stack node per open
 * call that does not return to its rule's end).
 */

import { AutomatonLimitError } from './automaton-limit-error';
import { DEFAULT_MAX_NFA_STATES, NfaKind } from './byte-nfa';
import { type GrammarNfa, buildGrammarNfa } from './grammar-nfa';
import { parseGrammar } from './grammar-syntax';
import { DEFAULT_MAX_BUILD_WORK, DEFAULT_MAX_DFA_STATES } from './regex-automaton';
import { LazyDfa } from './lazy-dfa';
import { DEAD } from './text-automaton';
import type { CodePointSet } from './code-point-set';

export { AutomatonLimitError } from './automaton-limit-error';
export { GrammarSyntaxError } from './grammar-syntax';
export { UnprintableTextError } from './unprintable-text-error';

export interface GrammarLimits {
  /** NFA states the grammar may spell out (counted repeats copied); past it, GrammarSyntaxError. */
  readonly maxNfaStates?: number;
  /** Configurations (DFA states) the automaton may reach; past it, AutomatonLimitError. */
  readonly maxDfaStates?: number;
  /** Building work, at most (each pair a closure visits, and each member a step reads, counts WORK_PER_VISIT); past it, AutomatonLimitError. */
  readonly maxBuildWork?: number;
}

/**
 * A closure's visit (a pair looked up, a stack interned: 330-800 ns here,
 * the more the larger the closure), and a member a step reads, counted as
 * this much of the building work the limits bound, which were sized for a
 * regex's NFA states (~12 ns each; 10M ≈ 0.12 s): a grammar's request is
 * stopped after 200,000 visits, about as much time as a regex's. Grammars
 * that multiply their stacks reach the bound; so does long output whose
 * stacks keep changing, since a state holds its whole stack: a varied JSON
 * text 7 deep built a new state a byte and ran past it 600 bytes in, on a
 * fresh automaton (which is why the edge writes JSON as a regex unless
 * SSSD_JSON_GRAMMAR is set).
 */
export const WORK_PER_VISIT = 50;
/**
 * Pairs one closure may visit (~65 ms here). An ambiguous grammar's
 * configurations can multiply (nullable rules nested in pairs reach 2^d
 * stacks in the first one): stopped inside the closure, not after it, so a
 * single step never holds the pool's thread for longer, whatever the limits
 * left.
 */
export const MAX_CLOSURE_VISITS = 200_000;
/** A member's two numbers as one sortable key: position * 2^32 + stack. */
const STACK_SPAN = 2 ** 32;

/**
 * Parses, builds the NFA, checks the rules and builds the start state (one
 * closure, bounded): the edge refuses with a 400 a grammar whose first
 * configuration is already past the limits, before any pool compiles it.
 */
export function checkGrammar(text: string, limits: GrammarLimits = {}): void {
  compileGrammar(text, limits);
}

/** `printable`: the characters the tokenizer prints, or null for all (see buildGrammarNfa: no sentence printable is an UnprintableTextError). */
export function compileGrammar(text: string, limits: GrammarLimits = {}, printable: CodePointSet | null = null): GrammarAutomaton {
  const nfa = buildGrammarNfa(parseGrammar(text), limits.maxNfaStates ?? DEFAULT_MAX_NFA_STATES, printable);
  return new GrammarAutomaton(nfa, limits.maxDfaStates ?? DEFAULT_MAX_DFA_STATES, limits.maxBuildWork ?? DEFAULT_MAX_BUILD_WORK);
}

export class GrammarAutomaton extends LazyDfa<Float64Array> {
  readonly what = 'grammar';
  /** Stack nodes: node 0 is the empty stack; node i returns to `stackReturn[i]`, then to stack `stackParent[i]`. */
  private stackReturn = new Int32Array(64);
  private stackParent = new Int32Array(64);
  private stacks = 1;
  private readonly stackIds = new Map<number, number>();
  // Scratch for closures: pairs to visit (position, stack), pairs seen, members found.
  private readonly todo: number[] = [];
  private readonly seen = new Set<number>();
  private readonly members: number[] = [];
  /** Positions a call returns to that lead, reading nothing and calling nothing, only to their rule's end: calls returning there push no frame. */
  private readonly tailReturn: Uint8Array;

  constructor(
    private readonly nfa: GrammarNfa,
    maxStates: number,
    maxWork: number = DEFAULT_MAX_BUILD_WORK,
  ) {
    super(maxStates, maxWork);
    this.tailReturn = tailReturns(nfa);
    this.todo.push(nfa.start, 0);
    this.closure(); // state 0: the empty text's
  }

  /** Stack nodes made so far (for tests and logs). */
  get stackCount(): number {
    return this.stacks;
  }

  protected readBytes(set: Float64Array, taken: Uint8Array): void {
    const { kind, lo, hi } = this.nfa;
    for (const key of set) {
      const q = Math.floor(key / STACK_SPAN);
      if (kind[q] === NfaKind.Byte) taken.fill(1, lo[q], hi[q] + 1);
    }
  }

  /** Accepting where root's end with nothing to return to is a member. */
  protected acceptsSet(set: Float64Array): boolean {
    const acceptKey = this.nfa.rootEnd * STACK_SPAN;
    for (const key of set) if (key === acceptKey) return true;
    return false;
  }

  protected successor(set: Float64Array, b: number): number {
    const { kind, lo, hi, out1 } = this.nfa;
    this.charge(set.length * WORK_PER_VISIT);
    const todo = this.todo;
    for (const key of set) {
      const q = Math.floor(key / STACK_SPAN);
      if (kind[q] === NfaKind.Byte && lo[q] <= b && b <= hi[q]) todo.push(out1[q], key - q * STACK_SPAN);
    }
    return this.closure();
  }

  /**
   * The state of the members reachable without reading from the pairs in
   * `todo` (emptied, also when it throws): found or made. A call whose
   * return leads only to its rule's end (a tail call: `x ::= "a" x | ""`)
   * pushes nothing, so right recursion keeps a short stack and a closure
   * does not walk back through one frame per byte read; a rule's end with
   * nothing to return to is then the sentence's end, whichever rule it is.
   */
  private closure(): number {
    const { kind, out1, out2, rootEnd, stateCount: n } = this.nfa;
    const { todo, seen, members, tailReturn } = this;
    seen.clear();
    members.length = 0;
    // Within the closure's own cap and the work left: stopped as it reaches either, never after.
    const budget = Math.min(MAX_CLOSURE_VISITS, Math.floor(this.workLeft() / WORK_PER_VISIT) + 1);
    let visited = 0;
    try {
      while (todo.length > 0) {
        const s = todo.pop()!;
        const q = todo.pop()!;
        const key = s * n + q;
        if (seen.has(key)) continue;
        seen.add(key);
        if (++visited > budget) {
          this.spend(visited * WORK_PER_VISIT);
          throw visited > MAX_CLOSURE_VISITS ? new AutomatonLimitError(MAX_CLOSURE_VISITS, this.what, 'configurations in one step') : this.workLimitError();
        }
        switch (kind[q]) {
          case NfaKind.Epsilon:
            if (out2[q] >= 0) todo.push(out2[q], s);
            if (out1[q] >= 0) todo.push(out1[q], s);
            break;
          case NfaKind.Byte:
            // Trimmed readers (their byte leads nowhere live) have no way on.
            if (out1[q] >= 0) members.push(q * STACK_SPAN + s);
            break;
          case NfaKind.Call:
            if (out1[q] >= 0) todo.push(out2[q], tailReturn[out1[q]] === 1 ? s : this.pushed(s, out1[q]));
            break;
          default: // a rule's end: return to the caller, or, with nothing to return to, the text is a sentence
            if (s !== 0) todo.push(this.stackReturn[s], this.stackParent[s]);
            else members.push(rootEnd * STACK_SPAN);
        }
      }
    } catch (err) {
      // Whatever stopped it (its budget, stacks past the bound): the next closure starts from nothing.
      todo.length = 0;
      seen.clear();
      throw err;
    }
    this.charge(visited * WORK_PER_VISIT);
    if (members.length === 0) return DEAD;
    return this.intern(Float64Array.from(members).sort());
  }

  /** The stack that returns to `ret`, then as `parent` does: found or made. */
  private pushed(parent: number, ret: number): number {
    const key = parent * this.nfa.stateCount + ret;
    const known = this.stackIds.get(key);
    if (known !== undefined) return known;
    this.hold(1);
    const id = this.stacks++;
    if (id === this.stackReturn.length) {
      const grownReturn = new Int32Array(id * 2);
      grownReturn.set(this.stackReturn);
      this.stackReturn = grownReturn;
      const grownParent = new Int32Array(id * 2);
      grownParent.set(this.stackParent);
      this.stackParent = grownParent;
    }
    this.stackReturn[id] = ret;
    this.stackParent[id] = parent;
    this.stackIds.set(key, id);
    return id;
  }
}

/**
 * Which positions are tails: reading nothing and calling nothing, they can
 * only go on to their rule's end (through Epsilon states alone, with at
 * least one way there), so a call returning to one and going on is
 * returning to the caller's caller (1; 0 otherwise). Two passes backwards
 * over the Epsilon edges, linear in the NFA: the positions that reach a
 * live reader or call, and those that reach a rule's end. (Walked forwards
 * from each return, a long chain of Epsilon states that many calls return
 * into was walked once per call: minutes for a grammar within the bounds.)
 */
function tailReturns(nfa: GrammarNfa): Uint8Array {
  const { kind, out1, out2, stateCount: n } = nfa;
  // Epsilon edges reversed, as offsets into one list: the Epsilon states that step to each state.
  const counts = new Int32Array(n + 1);
  for (let q = 0; q < n; q++) {
    if (kind[q] !== NfaKind.Epsilon) continue;
    if (out1[q] >= 0) counts[out1[q] + 1]++;
    if (out2[q] >= 0) counts[out2[q] + 1]++;
  }
  for (let q = 0; q < n; q++) counts[q + 1] += counts[q];
  const from = new Int32Array(counts[n]);
  const fill = counts.slice(0, n);
  for (let q = 0; q < n; q++) {
    if (kind[q] !== NfaKind.Epsilon) continue;
    if (out1[q] >= 0) from[fill[out1[q]]++] = q;
    if (out2[q] >= 0) from[fill[out2[q]]++] = q;
  }
  /** The states that reach, through Epsilon states, one that `seed` picks. */
  const reaching = (seed: (q: number) => boolean): Uint8Array => {
    const marked = new Uint8Array(n);
    const stack: number[] = [];
    for (let q = 0; q < n; q++) {
      if (seed(q)) {
        marked[q] = 1;
        stack.push(q);
      }
    }
    while (stack.length > 0) {
      const q = stack.pop()!;
      for (let i = counts[q]; i < counts[q + 1]; i++) {
        const p = from[i];
        if (!marked[p]) {
          marked[p] = 1;
          stack.push(p);
        }
      }
    }
    return marked;
  };
  // A trimmed reader or call (out1 -1) leads nowhere: it neither blocks a tail nor makes one.
  const blocked = reaching((q) => (kind[q] === NfaKind.Byte || kind[q] === NfaKind.Call) && out1[q] >= 0);
  const ends = reaching((q) => kind[q] === NfaKind.Accept);
  const tail = new Uint8Array(n);
  for (let q = 0; q < n; q++) tail[q] = ends[q] && !blocked[q] ? 1 : 0;
  return tail;
}
