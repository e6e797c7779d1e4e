/**
 * A structured output's regex as a TextAutomaton: a lazy DFA over the
 * UTF-8 bytes of the output, built by subset construction from the byte
 * NFA only as far as texts actually go. A DFA state is the set of NFA
 * states (byte readers and the accepting one) a prefix reaches; since the
 * NFA is trimmed to states that reach acceptance, any non-empty set is
 * live and the empty one is DEAD. Each state has a row of 256 next states,
 * filled byte by byte on first use, so a warm `follow` is a table lookup
 * per byte.
 */

import { AutomatonLimitError } from './automaton-limit-error';
import { type ByteNfa, DEFAULT_MAX_NFA_STATES, NfaKind, buildByteNfa } from './byte-nfa';
import { RegexSyntaxError, parseRegex } from './regex-syntax';
import { DEAD, UNBUILT, type TextAutomaton } from './text-automaton';

export { AutomatonLimitError } from './automaton-limit-error';
export { RegexTooLargeError } from './byte-nfa';
export { RegexSyntaxError } from './regex-syntax';

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

/** A row entry not computed yet (DEAD is -1, states are >= 0). */
const UNKNOWN = -2;

/** Parses and builds the NFA only: cheap enough for the edge to refuse a bad pattern with a 400. */
export function checkRegex(pattern: string, limits: RegexLimits = {}): void {
  regexNfa(pattern, limits);
}

export function compileRegex(pattern: string, limits: RegexLimits = {}): RegexAutomaton {
  return new RegexAutomaton(regexNfa(pattern, limits), limits.maxDfaStates ?? DEFAULT_MAX_DFA_STATES, limits.maxBuildWork ?? DEFAULT_MAX_BUILD_WORK);
}

function regexNfa(pattern: string, limits: RegexLimits): ByteNfa {
  const nfa = buildByteNfa(parseRegex(pattern), limits.maxNfaStates ?? DEFAULT_MAX_NFA_STATES);
  if (!nfa.matchesSomething) throw new RegexSyntaxError('the pattern matches no text at all, so no output could satisfy it', 0);
  return nfa;
}

export class RegexAutomaton implements TextAutomaton {
  readonly what = 'regex';
  /** Row `s` at `s * 256`: the state after each byte, or UNKNOWN. */
  private table: Int32Array;
  private capacity = 16;
  private readonly sets: Int32Array[] = [];
  private accepts = new Uint8Array(16);
  /** State ids by their set's hash (collisions share a bucket): no key strings to hold. */
  private readonly ids = new Map<number, number[]>();
  /** NFA states held across all sets: bounded too, as a state's set can be large. */
  private entries = 0;
  private readonly nextBytesOf: (readonly number[] | undefined)[] = [];
  // Scratch for closures: a visit stamp per NFA state, a stack, the members found.
  private readonly seen: Int32Array;
  private stamp = 0;
  private readonly stack: Int32Array;
  private readonly members: Int32Array;
  /** NFA states visited building states so far (bounded by maxWork). */
  private work = 0;

  constructor(
    private readonly nfa: ByteNfa,
    private readonly maxStates: number,
    private readonly maxWork: number = DEFAULT_MAX_BUILD_WORK,
  ) {
    this.table = new Int32Array(this.capacity * 256).fill(UNKNOWN);
    this.seen = new Int32Array(nfa.stateCount);
    // Per closure: the seeds (one per member at most) and two ways out of each state visited once.
    this.stack = new Int32Array(nfa.stateCount * 3 + 1);
    this.members = new Int32Array(nfa.stateCount);
    this.stack[0] = nfa.start;
    this.closure(1); // state 0: the empty text's
  }

  /** How many DFA states exist so far (for tests and logs). */
  get stateCount(): number {
    return this.sets.length;
  }

  /** NFA states visited building states so far: what a request's calls added is charged to it (TextMasks). */
  get workDone(): number {
    return this.work;
  }

  /** The state after `bytes[start..end)` as far as it is built: UNBUILT where a byte's next state has not been made yet (nothing is built here). */
  followBuilt(state: number, bytes: Uint8Array, start: number, end: number): number {
    let s = state;
    for (let i = start; i < end && s >= 0; i++) {
      s = this.table[s * 256 + bytes[i]];
      if (s === UNKNOWN) return UNBUILT;
    }
    return s;
  }

  /** The share of its limits the automaton has used, the larger of states and building work (0 to 1). */
  get used(): number {
    return Math.max(this.sets.length / this.maxStates, this.work / this.maxWork);
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

  /** The bytes some NFA reader in the state takes: each leads to a non-empty, so live, set. */
  nextBytes(state: number): readonly number[] {
    if (state < 0) return [];
    const cached = this.nextBytesOf[state];
    if (cached !== undefined) return cached;
    const nfa = this.nfa;
    const taken = new Uint8Array(256);
    for (const q of this.sets[state]) {
      if (nfa.kind[q] !== NfaKind.Byte || nfa.out1[q] < 0) continue;
      taken.fill(1, nfa.lo[q], nfa.hi[q] + 1);
    }
    const bytes: number[] = [];
    for (let b = 0; b < 256; b++) if (taken[b]) bytes.push(b);
    this.nextBytesOf[state] = bytes;
    return bytes;
  }

  private step(state: number, b: number): number {
    const nfa = this.nfa;
    let top = 0;
    const set = this.sets[state];
    this.charge(set.length);
    for (const q of set) {
      if (nfa.kind[q] === NfaKind.Byte && nfa.lo[q] <= b && b <= nfa.hi[q] && nfa.out1[q] >= 0) this.stack[top++] = nfa.out1[q];
    }
    const next = this.closure(top);
    this.table[state * 256 + b] = next;
    return next;
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
    const members = this.members.subarray(0, count).sort();
    const hash = hashOf(members);
    const bucket = this.ids.get(hash);
    if (bucket !== undefined) for (const id of bucket) if (sameSet(this.sets[id], members)) return id;
    return this.addState(hash, members.slice());
  }

  private charge(visits: number): void {
    this.work += visits;
    if (this.work > this.maxWork) throw new AutomatonLimitError(this.maxWork, 'regex', 'steps of building');
  }

  private addState(hash: number, set: Int32Array): number {
    const id = this.sets.length;
    this.entries += set.length;
    // The sets may hold as many entries as the rows do: a few sets of many NFA states cost as much as many small ones.
    if (id >= this.maxStates || this.entries > this.maxStates * 256) throw new AutomatonLimitError(this.maxStates, 'regex');
    if (id === this.capacity) this.grow();
    this.sets.push(set);
    const bucket = this.ids.get(hash);
    if (bucket === undefined) this.ids.set(hash, [id]);
    else bucket.push(id);
    for (const q of set) if (this.nfa.kind[q] === NfaKind.Accept) this.accepts[id] = 1;
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

function hashOf(set: Int32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < set.length; i++) h = Math.imul(h ^ set[i], 0x01000193);
  return h >>> 0;
}

function sameSet(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
