/**
 * A regex tree as a Thompson NFA over UTF-8 bytes: each state either reads
 * one byte range, or moves without reading (to one or two states), or
 * accepts. Counted repeats are spelled out copy by copy, so a state limit
 * bounds both the memory and the time a pattern can cost; states that
 * cannot reach the accepting one are cut, so any non-empty set of states
 * left is a live prefix (what the lazy DFA relies on).
 */

import { complementSet, intersectSets, type CodePointSet } from './code-point-set';
import type { ExpressionNode, RuleReference } from './expression-node';
import { LENGTH_PHASES, LENGTH_START, lengthBoundary, lengthSteps } from './json-string-length';
import { RegexSyntaxError, type RegexNode } from './regex-syntax';
import { utf8Sequences } from './utf8-sequences';

export const DEFAULT_MAX_NFA_STATES = 100_000;

/**
 * What an NFA state does (plain numbers: they live in a Uint8Array). A
 * grammar's (grammar-nfa.ts) has Call states too: enter rule `out2` (its
 * number, until the rules are laid out: then its start), and go on at
 * `out1` once it ends; its Accept states are its rules' ends.
 */
export const NfaKind = { Byte: 0, Epsilon: 1, Accept: 2, Call: 3 } as const;
export type NfaKind = (typeof NfaKind)[keyof typeof NfaKind];

/** The states as built: a regex's (ByteNfa) or a grammar's rules (grammar-nfa.ts's GrammarNfa). */
export interface NfaTables {
  readonly start: number;
  readonly stateCount: number;
  readonly kind: Uint8Array;
  /** A Byte state's range, inclusive. */
  readonly lo: Uint8Array;
  readonly hi: Uint8Array;
  /** Where a state goes (a Byte state: after its byte; a Call: once the rule called ends); -1 = nowhere (or cut). */
  readonly out1: Int32Array;
  /** An Epsilon state's second way; a Call's callee's first state; -1 = none. */
  readonly out2: Int32Array;
}

export interface ByteNfa extends NfaTables {
  /** Whether any text matches at all (the start reaches the accepting state). */
  readonly matchesSomething: boolean;
  /** Whether some match holds only characters the tokenizer prints (matchesSomething where the NFA was built for every character). */
  readonly printsSomething: boolean;
  /** Where nothing printable matches: some characters the paths from the start need first that no token prints (for the refusal's message). */
  readonly unprintableExamples: readonly number[];
  /** States built on the way: these, and the JSON-length groups' own NFAs (built apart, then dropped). */
  readonly builtStates: number;
  /** 1 for `(?any-tail)`'s readers (any byte, then the end or more of the same). */
  readonly anyTail: Uint8Array;
}

/** A pattern whose automaton would be too large to build. */
export class RegexTooLargeError extends RegexSyntaxError {
  constructor(limit: number) {
    super(`the pattern is too large: its automaton needs more than ${limit} states (shorten repeat counts or classes)`, 0);
    this.name = 'RegexTooLargeError';
  }
}

/** `printable`: the characters the tokenizer can print, or null for all of them (see NfaBuilder). */
export function buildByteNfa(root: RegexNode, maxStates = DEFAULT_MAX_NFA_STATES, printable: CodePointSet | null = null): ByteNfa {
  const builder = new NfaBuilder(maxStates, printable);
  const accept = builder.add(NfaKind.Accept, 0, 0, -1, -1);
  const start = builder.compile(root, accept);
  return builder.finish(start, accept);
}

/** Builds NFA states back to front; a regex's tree, or a grammar rule's (its references as Call states). */
export class NfaBuilder {
  private readonly kind: number[] = [];
  private readonly lo: number[] = [];
  private readonly hi: number[] = [];
  private readonly out1: number[] = [];
  private readonly out2: number[] = [];

  /** Nodes compiled so far: bounded with the states, as a repeat of what adds no state (`(?:){1000}` nested) adds none. */
  private compiled = 0;
  /** Each JSON-length group's own NFA, built once however many copies of the group a repeat makes. */
  private readonly lengthItems = new Map<ExpressionNode<RuleReference>, { nfa: NfaBuilder; start: number }>();
  /** The states of those NFAs. */
  private lengthItemStates = 0;
  /** `(?any-tail)`'s readers: a DFA state holding one takes every continuation. */
  private readonly anyTailReaders: number[] = [];
  /**
   * Stand-ins for the characters of a class that no token prints (see
   * `printable`), by state: each reads "one such character" (its first code
   * point kept, for messages) and is cut once the NFA is trimmed, so no
   * text reaches them; until then they let the checks that hold for any
   * tokenizer (a pattern that matches nothing, a rule without end, left
   * recursion) see the pattern as written.
   */
  private readonly unprintable = new Map<number, number>();
  /** The characters no token prints (printable's complement, found once: every class is cut by it). */
  private readonly unprintableSet: CodePointSet | null;

  /**
   * `printable`: the characters the tokenizer's tokens can print, or null
   * (all of them: a byte-fallback vocabulary). Classes are cut to them, so
   * trimming leaves only states from which a text the tokens can print
   * reaches acceptance: a state whose every way on needs a character no
   * token prints is gone, rather than a dead end the masks walk into.
   */
  constructor(
    private readonly maxStates: number,
    private readonly printable: CodePointSet | null = null,
  ) {
    this.unprintableSet = printable === null ? null : complementSet(printable);
  }

  add(kind: NfaKind, lo: number, hi: number, out1: number, out2: number): number {
    if (this.kind.length >= this.maxStates) throw new RegexTooLargeError(this.maxStates);
    this.kind.push(kind);
    this.lo.push(lo);
    this.hi.push(hi);
    this.out1.push(out1);
    this.out2.push(out2);
    return this.kind.length - 1;
  }

  /** The start of `node`'s states, built to continue at `next` (built back to front: no patching). */
  compile(node: ExpressionNode<RuleReference>, next: number): number {
    // Two compiles a state at most in any pattern that adds states; past that, the work is repeats of nothing.
    if (++this.compiled > 2 * this.maxStates) throw new RegexTooLargeError(this.maxStates);
    switch (node.kind) {
      case 'empty':
        return next;
      case 'chars':
        return this.chars(node.set, next);
      case 'concat': {
        let at = next;
        for (let i = node.items.length - 1; i >= 0; i--) at = this.compile(node.items[i], at);
        return at;
      }
      case 'alternation':
        return this.either(node.items.map((item) => this.compile(item, next)));
      case 'repeat':
        return this.repeat(node.item, node.min, node.max, next);
      case 'jsonLength':
        return this.jsonLength(node.item, node.min, node.max, next);
      case 'anyTail':
        return this.anyTail(next, node.at);
      case 'ref':
        return this.add(NfaKind.Call, 0, 0, next, node.rule);
    }
  }

  /**
   * `(?any-tail)`: any bytes, then the end. Only where the end follows at
   * once (`next` is the accepting state): its reader's presence in a DFA
   * state then says every continuation is in the language (RegexAutomaton's
   * anyTail), which is what lets the pool lift the mask there.
   */
  private anyTail(next: number, at: number): number {
    if (this.kind[next] !== NfaKind.Accept) throw new RegexSyntaxError('(?any-tail) ends the pattern: nothing may follow it, nor repeat it', at);
    const loop = this.add(NfaKind.Epsilon, 0, 0, -1, next);
    const reader = this.add(NfaKind.Byte, 0, 255, loop, -1);
    this.out1[loop] = reader;
    this.anyTailReaders.push(reader);
    return loop;
  }

  private either(starts: readonly number[]): number {
    let at = starts[starts.length - 1];
    for (let i = starts.length - 2; i >= 0; i--) at = this.add(NfaKind.Epsilon, 0, 0, starts[i], at);
    return at;
  }

  private chars(set: CodePointSet, next: number): number {
    const { printable, unprintableSet } = this;
    const starts = this.sequences(printable === null ? set : intersectSets(set, printable), next);
    const unprintable = unprintableSet === null ? [] : intersectSets(set, unprintableSet);
    if (unprintable.length > 0) starts.push(this.unprintableReader(unprintable[0], next));
    // A set with no encodable member (a lone surrogate, [^\s\S]) matches nothing.
    if (starts.length === 0) return this.add(NfaKind.Epsilon, 0, 0, -1, -1);
    return this.either(starts);
  }

  /** A stand-in reading one unprintable character (`example` one of them) on to `next`: see `unprintable`. */
  private unprintableReader(example: number, next: number): number {
    const reader = this.add(NfaKind.Byte, 0, 0, next, -1);
    this.unprintable.set(reader, example);
    return reader;
  }

  /** The first states of `set`'s UTF-8 sequences, each going on to `next`. */
  private sequences(set: CodePointSet, next: number): number[] {
    // Sequences share their tails ([80-BF] into `next` ...): one state each.
    const shared = new Map<number, number>();
    const starts: number[] = [];
    for (let i = 0; i < set.length; i += 2) {
      for (const seq of utf8Sequences(set[i], set[i + 1])) {
        let at = next;
        for (let j = seq.length - 2; j >= 0; j -= 2) {
          const key = at * 65536 + seq[j] * 256 + seq[j + 1];
          let state = shared.get(key);
          if (state === undefined) {
            state = this.add(NfaKind.Byte, seq[j], seq[j + 1], at, -1);
            shared.set(key, state);
          }
          at = state;
        }
        starts.push(at);
      }
    }
    return starts;
  }

  private repeat(item: ExpressionNode<RuleReference>, min: number, max: number, next: number): number {
    let tail: number;
    if (max === Infinity) {
      const loop = this.add(NfaKind.Epsilon, 0, 0, -1, next);
      this.out1[loop] = this.compile(item, loop);
      tail = loop;
    } else {
      // x{0,k} as (x(x(x)?)?)?: each optional copy may skip straight to `next`.
      tail = next;
      for (let i = 0; i < max - min; i++) tail = this.add(NfaKind.Epsilon, 0, 0, this.compile(item, tail), next);
    }
    for (let i = 0; i < min; i++) tail = this.compile(item, tail);
    return tail;
  }

  /**
   * `item`'s texts whose JSON string value has `min` to `max` code points: the
   * product of `item`'s own NFA (built apart, then dropped) with the length
   * counter (json-string-length.ts), a state per (item state, counter phase,
   * count) reached from the start, so the states bound it as any other
   * part. Counts past `max` go nowhere; with no `max`, counts past `min` are
   * one (`min` or more). Only what reaches the start's product is built.
   */
  private jsonLength(item: ExpressionNode<RuleReference>, min: number, max: number, next: number): number {
    const { nfa: inner, start: innerStart } = this.lengthItem(item);
    const counts = max === Infinity ? min + 1 : max + 1;
    const top = max === Infinity ? min : max;
    const ids = new Map<number, number>();
    const todo: number[] = [];
    // A product state, made (as a placeholder, filled below) where first met.
    const at = (q: number, phase: number, count: number): number => {
      if (q < 0) return -1;
      const key = (q * LENGTH_PHASES + phase) * counts + count;
      let id = ids.get(key);
      if (id === undefined) {
        id = this.add(NfaKind.Epsilon, 0, 0, -1, -1);
        ids.set(key, id);
        todo.push(id, q, phase, count);
      }
      return id;
    };
    const start = at(innerStart, LENGTH_START, 0);
    while (todo.length > 0) {
      const count = todo.pop()!;
      const phase = todo.pop()!;
      const q = todo.pop()!;
      const id = todo.pop()!;
      switch (inner.kind[q]) {
        case NfaKind.Epsilon:
          this.out1[id] = at(inner.out1[q], phase, count);
          this.out2[id] = at(inner.out2[q], phase, count);
          break;
        case NfaKind.Accept:
          if (lengthBoundary(phase) && count >= min) this.out1[id] = next;
          break;
        case NfaKind.Byte: {
          const example = inner.unprintable.get(q);
          if (example !== undefined) {
            // A whole character no token prints, counted as a raw one (only between code points; inside an
            // escape it goes nowhere): it is cut at trimming, and only says whether the group matches at all.
            if (lengthBoundary(phase) && count + 1 <= max) {
              this.kind[id] = NfaKind.Byte;
              this.out1[id] = at(inner.out1[q], LENGTH_START, Math.min(count + 1, top));
              this.unprintable.set(id, example);
            }
            break;
          }
          // The counter's ways out that overlap the state's bytes, each read by a state of its own; this state
          // is the one reader, or the choice between them.
          const pieces: number[] = [];
          for (const step of lengthSteps(phase)) {
            const lo = Math.max(step.lo, inner.lo[q]);
            const hi = Math.min(step.hi, inner.hi[q]);
            if (lo <= hi && count + step.counted <= max) pieces.push(lo, hi, at(inner.out1[q], step.next, Math.min(count + step.counted, top)));
          }
          if (pieces.length === 3) {
            this.kind[id] = NfaKind.Byte;
            [this.lo[id], this.hi[id], this.out1[id]] = pieces;
          } else if (pieces.length > 3) {
            const readers: number[] = [];
            for (let i = 0; i < pieces.length; i += 3) readers.push(this.add(NfaKind.Byte, pieces[i], pieces[i + 1], pieces[i + 2], -1));
            this.out1[id] = readers[0];
            this.out2[id] = this.either(readers.slice(1));
          }
          break;
        }
        default:
          throw new Error('a rule call inside a JSON-length group');
      }
    }
    return start;
  }

  /**
   * A JSON-length group's own NFA, built once (a repeat's copies share it) and charged to the work bound with the
   * states it built: a group whose product is tiny (`maxLength` 0 stops it at once) still costs its own build, and
   * uncharged, a regex of many copies of a large one ran the pool's thread for minutes (review h95).
   */
  private lengthItem(item: ExpressionNode<RuleReference>): { nfa: NfaBuilder; start: number } {
    let built = this.lengthItems.get(item);
    if (built === undefined) {
      const nfa = new NfaBuilder(Math.max(1, this.maxStates - this.kind.length), this.printable);
      try {
        built = { nfa, start: nfa.compile(item, nfa.add(NfaKind.Accept, 0, 0, -1, -1)) };
      } catch (err) {
        // The group's own bound is what this regex had left: the error names the regex's.
        if (err instanceof RegexTooLargeError) throw new RegexTooLargeError(this.maxStates);
        throw err;
      }
      this.compiled += nfa.compiled + nfa.kind.length;
      this.lengthItemStates += nfa.kind.length;
      if (this.compiled > 2 * this.maxStates) throw new RegexTooLargeError(this.maxStates);
      this.lengthItems.set(item, built);
    }
    return built;
  }

  /** The states built so far, as arrays (a grammar lays them out and trims them itself). */
  states(): { kind: Uint8Array; lo: Uint8Array; hi: Uint8Array; out1: Int32Array; out2: Int32Array } {
    return { kind: Uint8Array.from(this.kind), lo: Uint8Array.from(this.lo), hi: Uint8Array.from(this.hi), out1: Int32Array.from(this.out1), out2: Int32Array.from(this.out2) };
  }

  private anyTailMarks(n: number): Uint8Array {
    const marks = new Uint8Array(n);
    for (const reader of this.anyTailReaders) marks[reader] = 1;
    return marks;
  }

  /** The unprintable stand-ins (state → a character it stands for), for a grammar's NFA to cut as it trims. */
  unprintableReaders(): ReadonlyMap<number, number> {
    return this.unprintable;
  }

  finish(start: number, accept: number): ByteNfa {
    const n = this.kind.length;
    const out1 = Int32Array.from(this.out1);
    const out2 = Int32Array.from(this.out2);
    const matches = reachesAccept(n, out1, out2, accept);
    // The stand-ins read nothing a token prints: cut before trimming, so what is left reaches acceptance in printable text.
    for (const reader of this.unprintable.keys()) out1[reader] = -1;
    const live = this.unprintable.size === 0 ? matches : reachesAccept(n, out1, out2, accept);
    const unprintableExamples = live[start] ? [] : examplesFrom(start, this.kind, this.out1, this.out2, this.unprintable, matches);
    for (let s = 0; s < n; s++) {
      if (out1[s] >= 0 && !live[out1[s]]) out1[s] = -1;
      if (out2[s] >= 0 && !live[out2[s]]) out2[s] = -1;
    }
    return {
      start,
      stateCount: n,
      kind: Uint8Array.from(this.kind),
      lo: Uint8Array.from(this.lo),
      hi: Uint8Array.from(this.hi),
      out1,
      out2,
      matchesSomething: matches[start] === 1,
      printsSomething: live[start] === 1,
      unprintableExamples,
      builtStates: n + this.lengthItemStates,
      anyTail: this.anyTailMarks(n),
    };
  }
}

/**
 * Up to 3 characters no token prints that stand first on the paths from
 * `start` that would match (`matches`): the stand-ins reached without
 * passing another one (a call's callee counts as its way on). For the
 * message of a pattern that needs what the tokenizer cannot write.
 */
export function examplesFrom(
  start: number,
  kind: ArrayLike<number>,
  out1: ArrayLike<number>,
  out2: ArrayLike<number>,
  unprintable: ReadonlyMap<number, number>,
  matches: ArrayLike<number>,
): number[] {
  const seen = new Set<number>([start]);
  const stack = [start];
  const found = new Set<number>();
  while (stack.length > 0 && found.size < 3) {
    const q = stack.pop()!;
    const example = unprintable.get(q);
    if (example !== undefined) {
      if (matches[q]) found.add(example);
      continue;
    }
    const next = kind[q] === NfaKind.Byte ? [out1[q]] : [out1[q], out2[q]];
    for (const t of next) if (t >= 0 && !seen.has(t)) {
      seen.add(t);
      stack.push(t);
    }
  }
  return [...found].sort((a, b) => a - b);
}

/** Which states some path leads from to `accept` (a walk over the reversed edges). */
function reachesAccept(n: number, out1: Int32Array, out2: Int32Array, accept: number): Uint8Array {
  const inDegree = new Int32Array(n + 1);
  for (let s = 0; s < n; s++) {
    if (out1[s] >= 0) inDegree[out1[s] + 1]++;
    if (out2[s] >= 0) inDegree[out2[s] + 1]++;
  }
  for (let s = 0; s < n; s++) inDegree[s + 1] += inDegree[s];
  const from = new Int32Array(inDegree[n]);
  const fill = inDegree.slice(0, n);
  for (let s = 0; s < n; s++) {
    if (out1[s] >= 0) from[fill[out1[s]]++] = s;
    if (out2[s] >= 0) from[fill[out2[s]]++] = s;
  }
  const live = new Uint8Array(n);
  const stack = new Int32Array(n);
  let top = 0;
  live[accept] = 1;
  stack[top++] = accept;
  while (top > 0) {
    const s = stack[--top];
    for (let k = inDegree[s]; k < inDegree[s + 1]; k++) {
      const p = from[k];
      if (!live[p]) {
        live[p] = 1;
        stack[top++] = p;
      }
    }
  }
  return live;
}
