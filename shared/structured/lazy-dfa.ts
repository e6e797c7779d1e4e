/**
 * What a regex's and a grammar's automata share: a deterministic automaton
 * over bytes built as texts reach its states (a lazy DFA). A state is a set
 * of members (NFA states for a regex; positions with their return stacks
 * for a grammar), interned by its sorted contents; each state has a row of
 * 256 next states filled on first use, so a warm `follow` is a table lookup
 * per byte. A subclass says what a byte does to a set (`successor`) and
 * which bytes its members read (`readBytes`); the table, the interning and
 * the limits (states, members held, building work) are kept here.
 */

import { AutomatonLimitError } from './automaton-limit-error';
import { UNBUILT, type TextAutomaton } from './text-automaton';

/** A row entry not computed yet (DEAD is -1, states are >= 0). */
const UNKNOWN = -2;

/** A state's members, sorted: NFA states, or members packed into doubles. */
export type MemberSet = Int32Array | Float64Array;

export abstract class LazyDfa<S extends MemberSet> implements TextAutomaton {
  /** What it follows, as a limit's error names it. */
  abstract readonly what: string;
  /** Row `s` at `s * 256`: the state after each byte, or UNKNOWN. */
  private table: Int32Array;
  private capacity = 16;
  protected readonly sets: S[] = [];
  private accepts = new Uint8Array(16);
  /** State ids by their set's hash (collisions share a bucket): no key strings to hold. */
  private readonly ids = new Map<number, number[]>();
  /** Members held across all sets (and whatever else a subclass counts): bounded too, as a state's set can be large. */
  private entries = 0;
  private readonly nextBytesOf: (readonly number[] | undefined)[] = [];
  /** Building work so far (bounded by maxWork): what a request's calls added is charged to it (TextMasks). */
  private work = 0;
  /** Work past which the current call stops (a request's own bound, setWorkBudget), and the bound its error names. */
  private stopAt = Infinity;
  private stopLimit = 0;

  constructor(
    protected readonly maxStates: number,
    protected readonly maxWork: number,
  ) {
    this.table = new Int32Array(this.capacity * 256).fill(UNKNOWN);
  }

  /** How many states exist so far. */
  get stateCount(): number {
    return this.sets.length;
  }

  get workDone(): number {
    return this.work;
  }

  /** The share of its limits the automaton has used, the largest of states, members held and building work (0 to 1). */
  get used(): number {
    return Math.max(this.sets.length / this.maxStates, this.entries / (this.maxStates * 256), this.work / this.maxWork);
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

  follow(state: number, bytes: Uint8Array, start: number, end: number): number {
    let s = state;
    let table = this.table;
    for (let i = start; i < end && s >= 0; i++) {
      const b = bytes[i];
      let t = table[s * 256 + b];
      if (t === UNKNOWN) {
        t = this.successor(this.sets[s], b);
        this.table[s * 256 + b] = t;
        table = this.table; // a new state may have grown it
      }
      s = t;
    }
    return s;
  }

  accepting(state: number): boolean {
    return state >= 0 && this.accepts[state] === 1;
  }

  /** The bytes some member of the state reads: each leads to a non-empty, so live, set. */
  nextBytes(state: number): readonly number[] {
    if (state < 0) return [];
    const cached = this.nextBytesOf[state];
    if (cached !== undefined) return cached;
    const taken = new Uint8Array(256);
    this.readBytes(this.sets[state], taken);
    const bytes: number[] = [];
    for (let b = 0; b < 256; b++) if (taken[b]) bytes.push(b);
    this.nextBytesOf[state] = bytes;
    return bytes;
  }

  /** The state after byte `b` from the state of `set`: an interned one, or DEAD. */
  protected abstract successor(set: S, b: number): number;

  /** Marks in `taken` every byte some member of `set` reads on to a live state. */
  protected abstract readBytes(set: S, taken: Uint8Array): void;

  /** Whether a state of these members is a whole sentence (asked once, as the state is made). */
  protected abstract acceptsSet(set: S): boolean;

  /**
   * Bounds the building of the calls that follow at `budget` more work,
   * until clearWorkBudget: past it they stop, as they build, with an
   * AutomatonLimitError naming `limit` (a request's own bound, TextMasks),
   * rather than finish a call (the ids of a state: every token followed)
   * that ran far past it.
   */
  setWorkBudget(budget: number, limit: number): void {
    this.stopAt = this.work + Math.max(0, budget);
    this.stopLimit = limit;
  }

  clearWorkBudget(): void {
    this.stopAt = Infinity;
  }

  /** Work the current call may still do: within the automaton's bound and the call's budget. */
  protected workLeft(): number {
    return Math.min(this.maxWork, this.stopAt) - this.work;
  }

  /** Adds building work; past the automaton's bound or the call's budget, AutomatonLimitError. */
  protected charge(work: number): void {
    if (!this.spend(work)) throw this.workLimitError();
  }

  /** Adds building work; whether the call is still within the automaton's bound and its budget. */
  protected spend(work: number): boolean {
    this.work += work;
    return this.work <= this.maxWork && this.work <= this.stopAt;
  }

  /** The error for work past a bound: the automaton's own, or the call's budget where that was the one passed. */
  protected workLimitError(): AutomatonLimitError {
    if (this.work > this.stopAt && this.stopAt < this.maxWork) return new AutomatonLimitError(this.stopLimit, this.what, 'steps of building');
    return new AutomatonLimitError(this.maxWork, this.what, 'steps of building');
  }

  /** Counts entries held beside the sets (a grammar's stack nodes) against the same bound. */
  protected hold(entries: number): void {
    this.entries += entries;
    if (this.entries > this.maxStates * 256) throw new AutomatonLimitError(this.maxStates, this.what);
  }

  /** The state of this sorted set (scratch: copied where it makes a state), found or made. */
  protected intern(set: S): number {
    const hash = hashOf(set);
    const bucket = this.ids.get(hash);
    if (bucket !== undefined) for (const id of bucket) if (sameSet(this.sets[id], set)) return id;
    const id = this.sets.length;
    // The sets may hold as many entries as the rows do: a few sets of many members cost as much as many small ones.
    if (id >= this.maxStates) throw new AutomatonLimitError(this.maxStates, this.what);
    this.hold(set.length);
    if (id === this.capacity) this.grow();
    const kept = set.slice() as S;
    this.sets.push(kept);
    if (bucket === undefined) this.ids.set(hash, [id]);
    else bucket.push(id);
    if (this.acceptsSet(kept)) this.accepts[id] = 1;
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

/** FNV-1a over the members; a double's two 32-bit halves both mixed in (a grammar's position and stack). */
function hashOf(set: MemberSet): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < set.length; i++) {
    const v = set[i];
    h = Math.imul(h ^ (v | 0), 0x01000193);
    if (v >= 0x80000000 || v < -0x80000000) h = Math.imul(h ^ Math.floor(v / 0x100000000), 0x01000193);
  }
  return h >>> 0;
}

function sameSet(a: MemberSet, b: MemberSet): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
