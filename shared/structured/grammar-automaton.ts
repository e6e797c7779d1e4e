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
 * end, so any non-empty configuration is live and the empty one is DEAD.
 * Each state has a row of 256 next states filled on first use: a warm
 * `follow` is a table lookup per byte.
 *
 * A configuration is as large as the prefix needs (a stack node per open
 * call); limits as RegexAutomaton's bound states, members and building work.
 */

import { AutomatonLimitError } from './automaton-limit-error';
import { DEFAULT_MAX_NFA_STATES, NfaKind } from './byte-nfa';
import { type GrammarNfa, buildGrammarNfa } from './grammar-nfa';
import { parseGrammar } from './grammar-syntax';
import { DEFAULT_MAX_BUILD_WORK, DEFAULT_MAX_DFA_STATES } from './regex-automaton';
import { DEAD, UNBUILT, type TextAutomaton } from './text-automaton';

export { AutomatonLimitError } from './automaton-limit-error';
export { GrammarSyntaxError } from './grammar-syntax';

export interface GrammarLimits {
  /** NFA states the grammar may spell out (counted repeats copied); past it, GrammarSyntaxError. */
  readonly maxNfaStates?: number;
  /** Configurations (DFA states) the automaton may reach; past it, AutomatonLimitError. */
  readonly maxDfaStates?: number;
  /** Members visited building them, at most; past it, AutomatonLimitError. */
  readonly maxBuildWork?: number;
}

/** A row entry not computed yet (DEAD is -1, states are >= 0). */
const UNKNOWN = -2;
/**
 * A closure's visit (a pair looked up, a stack interned: ~330 ns here)
 * counted as this much of the building work the limits bound, which were
 * sized for a regex's NFA states (~12 ns each; 10M ≈ 0.12 s): a grammar's
 * request is stopped after about as much time as a regex's.
 */
export const WORK_PER_VISIT = 25;
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

export function compileGrammar(text: string, limits: GrammarLimits = {}): GrammarAutomaton {
  const nfa = buildGrammarNfa(parseGrammar(text), limits.maxNfaStates ?? DEFAULT_MAX_NFA_STATES);
  return new GrammarAutomaton(nfa, limits.maxDfaStates ?? DEFAULT_MAX_DFA_STATES, limits.maxBuildWork ?? DEFAULT_MAX_BUILD_WORK);
}

export class GrammarAutomaton implements TextAutomaton {
  readonly what = 'grammar';
  /** Row `s` at `s * 256`: the state after each byte, or UNKNOWN. */
  private table: Int32Array;
  private capacity = 16;
  /** Each state's members as sorted keys (position * 2^32 + stack). */
  private readonly sets: Float64Array[] = [];
  private accepts = new Uint8Array(16);
  /** State ids by their configuration's hash (collisions share a bucket). */
  private readonly ids = new Map<number, number[]>();
  /** Members held across all states, and stack nodes: bounded with the states, as a configuration can be large. */
  private entries = 0;
  private readonly nextBytesOf: (readonly number[] | undefined)[] = [];
  /** Stack nodes: node 0 is the empty stack; node i returns to `stackReturn[i]`, then to stack `stackParent[i]`. */
  private stackReturn = new Int32Array(64);
  private stackParent = new Int32Array(64);
  private stacks = 1;
  private readonly stackIds = new Map<number, number>();
  // Scratch for closures: pairs to visit (position, stack), pairs seen, members found.
  private readonly todo: number[] = [];
  private readonly seen = new Set<number>();
  private readonly members: number[] = [];
  private work = 0;
  /** Positions a call returns to that lead, reading nothing and calling nothing, only to their rule's end: calls returning there push no frame. */
  private readonly tailReturn: Uint8Array;

  constructor(
    private readonly nfa: GrammarNfa,
    private readonly maxStates: number,
    private readonly maxWork: number = DEFAULT_MAX_BUILD_WORK,
  ) {
    this.table = new Int32Array(this.capacity * 256).fill(UNKNOWN);
    this.tailReturn = tailReturns(nfa);
    this.todo.push(nfa.start, 0);
    this.closure(); // state 0: the empty text's
  }

  get stateCount(): number {
    return this.sets.length;
  }

  /** Members visited building states so far: what a request's calls added is charged to it (TextMasks). */
  get workDone(): number {
    return this.work;
  }

  /** The share of its limits the automaton has used, the larger of states and building work (0 to 1). */
  get used(): number {
    return Math.max(this.sets.length / this.maxStates, this.work / this.maxWork);
  }

  followBuilt(state: number, bytes: Uint8Array, start: number, end: number): number {
    let s = state;
    for (let i = start; i < end && s >= 0; i++) {
      s = this.table[s * 256 + bytes[i]];
      if (s === UNKNOWN) return UNBUILT;
    }
    return s;
  }

  follow(state: number, bytes: Uint8Array, start: number, end: number): number {
    let s = state;
    let table = this.table;
    for (let i = start; i < end && s >= 0; i++) {
      const b = bytes[i];
      let t = table[s * 256 + b];
      if (t === UNKNOWN) {
        t = this.step(s, b);
        table = this.table; // a new state may have grown it
      }
      s = t;
    }
    return s;
  }

  accepting(state: number): boolean {
    return state >= 0 && this.accepts[state] === 1;
  }

  nextBytes(state: number): readonly number[] {
    if (state < 0) return [];
    const cached = this.nextBytesOf[state];
    if (cached !== undefined) return cached;
    const { kind, lo, hi } = this.nfa;
    const taken = new Uint8Array(256);
    for (const key of this.sets[state]) {
      const q = Math.floor(key / STACK_SPAN);
      if (kind[q] === NfaKind.Byte) taken.fill(1, lo[q], hi[q] + 1);
    }
    const bytes: number[] = [];
    for (let b = 0; b < 256; b++) if (taken[b]) bytes.push(b);
    this.nextBytesOf[state] = bytes;
    return bytes;
  }

  /** Stack nodes made so far (for tests and logs). */
  get stackCount(): number {
    return this.stacks;
  }

  private step(state: number, b: number): number {
    const { kind, lo, hi, out1 } = this.nfa;
    const set = this.sets[state];
    this.charge(set.length * WORK_PER_VISIT);
    const todo = this.todo;
    for (const key of set) {
      const q = Math.floor(key / STACK_SPAN);
      if (kind[q] === NfaKind.Byte && lo[q] <= b && b <= hi[q]) todo.push(out1[q], key - q * STACK_SPAN);
    }
    const next = this.closure();
    this.table[state * 256 + b] = next;
    return next;
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
    const budget = Math.min(MAX_CLOSURE_VISITS, Math.floor((this.maxWork - this.work) / WORK_PER_VISIT) + 1);
    let visited = 0;
    while (todo.length > 0) {
      const s = todo.pop()!;
      const q = todo.pop()!;
      const key = s * n + q;
      if (seen.has(key)) continue;
      seen.add(key);
      if (++visited > budget) {
        todo.length = 0;
        seen.clear();
        this.work += visited * WORK_PER_VISIT;
        throw visited > MAX_CLOSURE_VISITS
          ? new AutomatonLimitError(MAX_CLOSURE_VISITS, 'grammar', 'configurations in one step')
          : new AutomatonLimitError(this.maxWork, 'grammar', 'steps of building');
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
    this.charge(visited * WORK_PER_VISIT);
    if (members.length === 0) return DEAD;
    const set = Float64Array.from(members).sort();
    const hash = hashOf(set);
    const bucket = this.ids.get(hash);
    if (bucket !== undefined) for (const id of bucket) if (sameSet(this.sets[id], set)) return id;
    return this.addState(hash, set);
  }

  /** The stack that returns to `ret`, then as `parent` does: found or made. */
  private pushed(parent: number, ret: number): number {
    const key = parent * this.nfa.stateCount + ret;
    const known = this.stackIds.get(key);
    if (known !== undefined) return known;
    const id = this.stacks++;
    if (++this.entries > this.maxStates * 256) throw new AutomatonLimitError(this.maxStates, 'grammar');
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

  private charge(visits: number): void {
    this.work += visits;
    if (this.work > this.maxWork) throw new AutomatonLimitError(this.maxWork, 'grammar', 'steps of building');
  }

  private addState(hash: number, set: Float64Array): number {
    const id = this.sets.length;
    this.entries += set.length;
    if (id >= this.maxStates || this.entries > this.maxStates * 256) throw new AutomatonLimitError(this.maxStates, 'grammar');
    if (id === this.capacity) this.grow();
    this.sets.push(set);
    const bucket = this.ids.get(hash);
    if (bucket === undefined) this.ids.set(hash, [id]);
    else bucket.push(id);
    // Accepting where root's end with nothing to return to is a member.
    const acceptKey = this.nfa.rootEnd * STACK_SPAN;
    for (const key of set) if (key === acceptKey) this.accepts[id] = 1;
    return id;
  }

  private grow(): void {
    this.capacity = Math.min(this.capacity * 2, this.maxStates);
    const table = new Int32Array(this.capacity * 256).fill(UNKNOWN);
    table.set(this.table);
    this.table = table;
    const accepts = new Uint8Array(this.capacity);
    accepts.set(this.accepts);
    this.accepts = accepts;
  }
}

function hashOf(set: Float64Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < set.length; i++) {
    const key = set[i];
    const q = Math.floor(key / STACK_SPAN);
    h = Math.imul(h ^ q, 0x01000193);
    h = Math.imul(h ^ (key - q * STACK_SPAN), 0x01000193);
  }
  return h >>> 0;
}

function sameSet(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Whether each position, reading nothing and calling nothing, can only go
 * on to its rule's end (through Epsilon states alone, with at least one way
 * there): returning to it and going on is returning to the caller's caller.
 */
function tailReturns(nfa: GrammarNfa): Uint8Array {
  const { kind, out1, out2, stateCount: n } = nfa;
  // 0 unknown, 1 tail, 2 not, 3 on the current path (an Epsilon cycle: its other ways decide).
  const mark = new Uint8Array(n);
  const isTail = (start: number): boolean => {
    // Iterative depth-first walk over Epsilon states; a Byte or Call reached (live or not) means not a tail.
    const stack = [start];
    const seen = new Set<number>([start]);
    let reachesEnd = false;
    while (stack.length > 0) {
      const q = stack.pop()!;
      if (mark[q] === 1) {
        reachesEnd = true;
        continue;
      }
      if (mark[q] === 2) return false;
      if (kind[q] === NfaKind.Byte || kind[q] === NfaKind.Call) {
        if (out1[q] >= 0) return false;
        continue; // a trimmed reader or call leads nowhere: no way on
      }
      if (kind[q] !== NfaKind.Epsilon) {
        reachesEnd = true; // the rule's end
        continue;
      }
      for (const next of [out1[q], out2[q]]) {
        if (next >= 0 && !seen.has(next)) {
          seen.add(next);
          stack.push(next);
        }
      }
    }
    return reachesEnd;
  };
  const tail = new Uint8Array(n);
  for (let q = 0; q < n; q++) {
    // Only calls' returns are asked for.
    if (kind[q] !== NfaKind.Call || out1[q] < 0) continue;
    const ret = out1[q];
    if (mark[ret] === 0) mark[ret] = isTail(ret) ? 1 : 2;
    tail[ret] = mark[ret] === 1 ? 1 : 0;
  }
  return tail;
}
