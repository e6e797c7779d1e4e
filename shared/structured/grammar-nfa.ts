/**
 * A GBNF grammar as byte NFAs, one per rule, built as a regex's are
 * (byte-nfa.ts: counted repeats spelled out, classes as UTF-8 byte ranges),
 * a reference to a rule a Call state, a rule's end an Accept state. Checked
 * here, since the automaton relies on it: no rule `root` reaches derives no
 * finite text (so every position left after trimming reaches its rule's
 * end, and every prefix the automaton keeps extends to a sentence), and no
 * rule reaches itself before reading a byte (left recursion: a prefix's
 * configurations would be infinite).
 */

import { DEFAULT_MAX_NFA_STATES, examplesFrom, NfaBuilder, NfaKind, RegexTooLargeError, type NfaTables } from './byte-nfa';
import type { CodePointSet } from './code-point-set';
import { type Grammar, GrammarSyntaxError } from './grammar-syntax';
import { quotedCharacter, UnprintableTextError } from './unprintable-text-error';

/** The rules' states, `start` root's first; `rootEnd` root's end (accepting where nothing is left to return to). */
export interface GrammarNfa extends NfaTables {
  readonly rootEnd: number;
}

/**
 * The grammar's NFA, its rules checked; a GrammarSyntaxError names a rule
 * that derives nothing or is left-recursive, or a grammar too large.
 * `printable`: the characters the tokenizer prints, or null for all (as a
 * regex's, byte-nfa.ts): the rules are checked as written, then trimmed to
 * what reaches an end in printable text; a grammar none of whose sentences
 * is printable is an UnprintableTextError.
 */
export function buildGrammarNfa(grammar: Grammar, maxStates = DEFAULT_MAX_NFA_STATES, printable: CodePointSet | null = null): GrammarNfa {
  const ruleCount = grammar.rules.length;
  const builder = new NfaBuilder(maxStates, printable);
  const start = new Int32Array(ruleCount);
  // A rule's states are the run from its end (added first) to the next rule's end.
  const end = new Int32Array(ruleCount + 1);
  try {
    for (let r = 0; r < ruleCount; r++) {
      end[r] = builder.add(NfaKind.Accept, 0, 0, -1, -1);
      start[r] = builder.compile(grammar.rules[r].body, end[r]);
    }
  } catch (err) {
    if (err instanceof RegexTooLargeError) {
      throw new GrammarSyntaxError(`the grammar is too large: its automaton needs more than ${maxStates} states (shorten repeat counts or classes)`, grammar.source, 0);
    }
    throw err;
  }
  const nfa = builder.states();
  const n = nfa.kind.length;
  end[ruleCount] = n;
  // Calls name their rule in out2 as built: kept as `callee`, out2 becomes the rule's first state.
  const callee = new Int32Array(n).fill(-1);
  for (let q = 0; q < n; q++) {
    if (nfa.kind[q] === NfaKind.Call) {
      callee[q] = nfa.out2[q];
      nfa.out2[q] = start[callee[q]];
    }
  }
  const layout: Layout = { n, ruleCount, start, end, callee, ...nfa };
  const reached = rulesReached(layout, grammar.root);
  const cycle = leftRecursion(layout, reachesEnd(layout, false), reached);
  if (cycle !== null) {
    const names = cycle.map((r) => grammar.rules[r].name);
    throw refused(grammar, cycle[0], `left recursion: rule '${names[0]}' reaches itself before any text (${names.join(' -> ')} -> ${names[0]}); rules are expanded top-down, so write it right-recursive (e.g. x ::= "a" x? rather than x ::= x? "a")`);
  }
  const live = reachesEnd(layout, true);
  // The last found of those without end: the one the others fail through, more often than not.
  const endless = reached.filter((r) => !live[start[r]]).pop();
  if (endless !== undefined) {
    throw refused(grammar, endless, `rule '${grammar.rules[endless].name}' derives no finite text: every way through it refers back to itself or to a rule without end (give it an alternative that ends)`);
  }
  const unprintable = builder.unprintableReaders();
  const printed = unprintable.size === 0 ? live : reachesEnd(layout, true, unprintable);
  const root = start[grammar.root];
  if (!printed[root]) throw new UnprintableTextError('no sentence of the grammar', examplesFrom(root, nfa.kind, nfa.out1, nfa.out2, unprintable, live).map(quotedCharacter));
  // The stand-ins for unprintable characters read nothing a token prints: cut, with every way into them.
  for (const reader of unprintable.keys()) nfa.out1[reader] = -1;
  trim(layout, printed);
  return { start: start[grammar.root], rootEnd: end[grammar.root], stateCount: n, kind: nfa.kind, lo: nfa.lo, hi: nfa.hi, out1: nfa.out1, out2: nfa.out2 };
}

interface Layout {
  readonly n: number;
  readonly ruleCount: number;
  readonly start: Int32Array;
  readonly end: Int32Array;
  readonly callee: Int32Array;
  readonly kind: Uint8Array;
  readonly out1: Int32Array;
  readonly out2: Int32Array;
}

function refused(grammar: Grammar, rule: number, message: string): GrammarSyntaxError {
  return new GrammarSyntaxError(message, grammar.source, grammar.rules[rule].offset);
}

/** The rules `root` refers to, directly or not, itself included (in the order found). */
function rulesReached(nfa: Layout, root: number): number[] {
  const seen = new Uint8Array(nfa.ruleCount);
  const order = [root];
  seen[root] = 1;
  for (let i = 0; i < order.length; i++) {
    const r = order[i];
    for (let q = nfa.end[r]; q < nfa.end[r + 1]; q++) {
      const c = nfa.callee[q];
      if (c >= 0 && !seen[c]) {
        seen[c] = 1;
        order.push(c);
      }
    }
  }
  return order;
}

/**
 * Which states reach their rule's end (reading bytes, or not where
 * `!bytes`: the nullable ones; never through a `blocked` reader), a call
 * counting only through a rule that does: one walk back from the ends, a
 * call's way opened when its rule's start is reached.
 */
function reachesEnd(nfa: Layout, bytes: boolean, blocked: ReadonlyMap<number, number> | null = null): Uint8Array {
  const { n, kind, out1, out2, callee, start } = nfa;
  // Edges walked back: to[i] <- from[i]; a call's edge is its way on (its rule's is opened below).
  const to: number[] = [];
  const from: number[] = [];
  const edge = (q: number, t: number): void => {
    if (t < 0) return;
    to.push(t);
    from.push(q);
  };
  const callTo: number[] = [];
  const callFrom: number[] = [];
  for (let q = 0; q < n; q++) {
    const k = kind[q];
    if (k === NfaKind.Byte && bytes && blocked?.has(q) !== true) edge(q, out1[q]);
    else if (k === NfaKind.Epsilon) {
      edge(q, out1[q]);
      edge(q, out2[q]);
    } else if (k === NfaKind.Call) {
      edge(q, out1[q]);
      callTo.push(callee[q]);
      callFrom.push(q);
    }
  }
  const preds = predecessors(n, to, from);
  const callers = predecessors(nfa.ruleCount, callTo, callFrom);
  const ruleOfStart = new Map<number, number>();
  for (let r = 0; r < nfa.ruleCount; r++) ruleOfStart.set(start[r], r);
  const live = new Uint8Array(n);
  const productive = new Uint8Array(nfa.ruleCount);
  const stack: number[] = [];
  const mark = (q: number): void => {
    if (!live[q]) {
      live[q] = 1;
      stack.push(q);
    }
  };
  for (let r = 0; r < nfa.ruleCount; r++) mark(nfa.end[r]);
  while (stack.length > 0) {
    const s = stack.pop()!;
    for (let k = preds.offsets[s]; k < preds.offsets[s + 1]; k++) {
      const p = preds.items[k];
      if (kind[p] !== NfaKind.Call || productive[callee[p]]) mark(p);
    }
    const r = ruleOfStart.get(s);
    if (r !== undefined && !productive[r]) {
      productive[r] = 1;
      for (let k = callers.offsets[r]; k < callers.offsets[r + 1]; k++) {
        const c = callers.items[k];
        if (live[out1[c]]) mark(c);
      }
    }
  }
  return live;
}

/** Predecessor lists (CSR) of `size` nodes from the edges to[i] <- from[i]. */
function predecessors(size: number, to: readonly number[], from: readonly number[]): { offsets: Int32Array; items: Int32Array } {
  const offsets = new Int32Array(size + 1);
  for (const t of to) offsets[t + 1]++;
  for (let i = 0; i < size; i++) offsets[i + 1] += offsets[i];
  const fill = offsets.slice(0, size);
  const items = new Int32Array(to.length);
  for (let i = 0; i < to.length; i++) items[fill[to[i]]++] = from[i];
  return { offsets, items };
}

/**
 * A cycle of rules each calling the next before reading a byte (through
 * nullable rules before the call), or null: the rules of the first found.
 */
function leftRecursion(nfa: Layout, nullable: Uint8Array, reached: readonly number[]): number[] | null {
  const { kind, out1, out2, callee, start } = nfa;
  const leftCalls: number[][] = Array.from({ length: nfa.ruleCount }, () => []);
  const seen = new Int32Array(nfa.n).fill(-1);
  for (const r of reached) {
    const stack = [start[r]];
    seen[start[r]] = r;
    while (stack.length > 0) {
      const q = stack.pop()!;
      const next: number[] = [];
      if (kind[q] === NfaKind.Epsilon) next.push(out1[q], out2[q]);
      else if (kind[q] === NfaKind.Call) {
        leftCalls[r].push(callee[q]);
        if (nullable[start[callee[q]]]) next.push(out1[q]);
      }
      for (const t of next) if (t >= 0 && seen[t] !== r) {
        seen[t] = r;
        stack.push(t);
      }
    }
  }
  // Depth-first over the left calls: a call to a rule still on the path closes a cycle.
  const state = new Uint8Array(nfa.ruleCount); // 0 new, 1 on the path, 2 done
  for (const root of reached) {
    if (state[root] !== 0) continue;
    const path = [root];
    const next = [0];
    state[root] = 1;
    while (path.length > 0) {
      const r = path[path.length - 1];
      const i = next[next.length - 1]++;
      if (i >= leftCalls[r].length) {
        state[r] = 2;
        path.pop();
        next.pop();
        continue;
      }
      const c = leftCalls[r][i];
      if (state[c] === 1) return path.slice(path.indexOf(c));
      if (state[c] === 0) {
        state[c] = 1;
        path.push(c);
        next.push(0);
      }
    }
  }
  return null;
}

/** Cuts every way into a state that reaches no end: what is left of a configuration is always live. */
function trim(nfa: Layout, live: Uint8Array): void {
  const { n, kind, out1, out2 } = nfa;
  for (let q = 0; q < n; q++) {
    if (out1[q] >= 0 && !live[out1[q]]) out1[q] = -1;
    if (kind[q] === NfaKind.Epsilon && out2[q] >= 0 && !live[out2[q]]) out2[q] = -1;
    // A call into a rule without end (one root never reaches) leads nowhere.
    if (kind[q] === NfaKind.Call && !live[q]) out1[q] = -1;
  }
}
