import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../shared/seeded-random';
import { AutomatonLimitError, type GrammarAutomaton, MAX_CLOSURE_VISITS, WORK_PER_VISIT, checkGrammar, compileGrammar } from '../../../shared/structured/grammar-automaton';
import { GrammarSyntaxError } from '../../../shared/structured/grammar-syntax';
import { compileRegex } from '../../../shared/structured/regex-automaton';
import { DEAD, type TextAutomaton } from '../../../shared/structured/text-automaton';

const encoder = new TextEncoder();
type Rand = () => number;
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)];

function run(automaton: TextAutomaton, text: string): number {
  const bytes = encoder.encode(text);
  return automaton.follow(0, bytes, 0, bytes.length);
}

/** Each prefix's state (by bytes) is live or DEAD, and whether the whole is a sentence. */
function trace(automaton: TextAutomaton, text: string): { live: boolean[]; accepted: boolean } {
  const bytes = encoder.encode(text);
  const live: boolean[] = [];
  let s = 0;
  for (let i = 0; i < bytes.length; i++) {
    s = automaton.follow(s, bytes, i, i + 1);
    live.push(s !== DEAD);
  }
  return { live, accepted: automaton.accepting(s) };
}

describe('regular grammars agree with the same language as a regex', () => {
  // A grammar and a regex spelling one language: rules refer only to later ones (no recursion), and are written inline in the regex.
  interface Spelled {
    gbnf: string;
    regex: string;
  }
  const LITERALS: readonly [string, string, string][] = [
    // [GBNF literal body, regex, a sample text]
    ['a', 'a', 'a'], ['b', 'b', 'b'], ['ab', 'ab', 'ab'], ['é', 'é', 'é'], ['😀', '😀', '😀'], ['\\n', '\\n', '\n'], ['\\"', '"', '"'], ['.', '\\.', '.'], ['\\\\', '\\\\', '\\'],
  ];
  const CLASSES: readonly [string, string][] = [
    ['[a-c]', '[a-c]'], ['[^a]', '[^a]'], ['[ab\\n]', '[ab\\n]'], ['[é-ë😀]', '[é-ë😀]'], ['[^b-z.]', '[^b-z.]'], ['.', '[\\s\\S]'],
  ];
  const QUANTS = ['*', '+', '?', '{2}', '{0,2}', '{1,3}', '{2,}'];
  const ALPHABET = ['a', 'b', 'c', 'é', '😀', '\n', '"', '.', '\\', 'z'];

  function atom(rand: Rand, rules: readonly Spelled[], depth: number): Spelled {
    const r = rand();
    if (r < 0.35) {
      const [g, x] = pick(rand, LITERALS);
      return { gbnf: `"${g}"`, regex: `(?:${x})` };
    }
    if (r < 0.55) {
      const [g, x] = pick(rand, CLASSES);
      return { gbnf: g, regex: x };
    }
    if (r < 0.75 && rules.length > 0) {
      const i = Math.floor(rand() * rules.length);
      return { gbnf: `r${rules.length - i}x`, regex: `(?:${rules[i].regex})` };
    }
    if (depth > 1) return { gbnf: '"a"', regex: 'a' };
    const inner = alternates(rand, rules, depth + 1);
    return { gbnf: `(${inner.gbnf})`, regex: `(?:${inner.regex})` };
  }

  function sequence(rand: Rand, rules: readonly Spelled[], depth: number): Spelled {
    const items: Spelled[] = [];
    const n = Math.floor(rand() * 3);
    for (let i = 0; i < n; i++) {
      let item = atom(rand, rules, depth);
      if (rand() < 0.3) {
        const q = pick(rand, QUANTS);
        item = { gbnf: `${item.gbnf}${q}`, regex: `(?:${item.regex})${q}` };
      }
      items.push(item);
    }
    return { gbnf: items.map((i) => i.gbnf).join(' ') || '""', regex: items.map((i) => i.regex).join('') };
  }

  function alternates(rand: Rand, rules: readonly Spelled[], depth: number): Spelled {
    const alts = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => sequence(rand, rules, depth));
    return { gbnf: alts.map((a) => a.gbnf).join(' | '), regex: alts.map((a) => a.regex).join('|') };
  }

  /** Rules built last first, each referring to those before it: rK ... r1, and root. */
  function grammar(rand: Rand): Spelled {
    const rules: Spelled[] = [];
    const lines: string[] = [];
    const count = Math.floor(rand() * 3);
    for (let k = 0; k < count; k++) {
      const body = alternates(rand, rules, 0);
      rules.unshift(body);
      lines.push(`r${rules.length}x ::= ${body.gbnf}`);
    }
    const root = alternates(rand, rules, 0);
    return { gbnf: [`root ::= ${root.gbnf}`, ...lines].join('\n'), regex: root.regex };
  }

  function sample(rand: Rand): string {
    const n = Math.floor(rand() * 7);
    let s = '';
    for (let i = 0; i < n; i++) s += pick(rand, ALPHABET);
    return s;
  }

  it('accepts the same texts, and finds the same prefixes dead (seeded)', () => {
    const rand = seededRandom(20);
    let accepted = 0;
    let compared = 0;
    for (let g = 0; g < 300; g++) {
      const spelled = grammar(rand);
      const ours: GrammarAutomaton = compileGrammar(spelled.gbnf);
      const regex = compileRegex(spelled.regex);
      for (let t = 0; t < 20; t++) {
        const text = sample(rand);
        const a = trace(ours, text);
        const b = trace(regex, text);
        expect(a, `${spelled.gbnf} on ${JSON.stringify(text)}`).toEqual(b);
        if (a.accepted) accepted++;
        compared++;
      }
    }
    expect(compared).toBe(6000);
    // Enough of them in the language for the comparison to mean something.
    expect(accepted).toBeGreaterThan(200);
  });
});

describe('recursive grammars agree with a brute-force recogniser (Earley over characters)', () => {
  /** A grammar as rules of alternatives of symbols: a one-character string is a terminal, a name a rule. */
  type Cfg = Map<string, string[][]>;

  function gbnfOf(cfg: Cfg): string {
    return [...cfg].map(([name, alts]) => `${name} ::= ${alts.map((alt) => (alt.length === 0 ? '""' : alt.map((s) => (cfg.has(s) ? s : JSON.stringify(s))).join(' '))).join(' | ')}`).join('\n');
  }

  /** Earley: whether each prefix of `text` is a prefix of a sentence (a chart set not empty), and whether the whole is one. */
  function earley(cfg: Cfg, text: string): { live: boolean[]; accepted: boolean } {
    type Item = { rule: string; alt: number; dot: number; origin: number };
    const sets: Item[][] = [];
    const keys: Set<string>[] = [];
    const add = (k: number, item: Item): void => {
      const key = `${item.rule}/${item.alt}/${item.dot}/${item.origin}`;
      if (keys[k].has(key)) return;
      keys[k].add(key);
      sets[k].push(item);
    };
    const chars = [...text];
    const live: boolean[] = [];
    for (let k = 0; k <= chars.length; k++) {
      sets.push([]);
      keys.push(new Set());
    }
    add(0, { rule: 'root', alt: -1, dot: 0, origin: 0 });
    const symbolsOf = (item: Item): string[] => (item.alt === -1 ? ['root'] : cfg.get(item.rule)![item.alt]);
    for (let k = 0; k <= chars.length; k++) {
      for (let i = 0; i < sets[k].length; i++) {
        const item = sets[k][i];
        const symbols = symbolsOf(item);
        if (item.dot === symbols.length) {
          // Complete: advance every item waiting on this rule at its origin (nullable rules: also those added later, by re-scanning).
          const rule = item.alt === -1 ? '' : item.rule;
          for (let j = 0; j < sets[item.origin].length; j++) {
            const waiting = sets[item.origin][j];
            const ws = symbolsOf(waiting);
            if (waiting.dot < ws.length && ws[waiting.dot] === rule) add(k, { ...waiting, dot: waiting.dot + 1 });
          }
          continue;
        }
        const next = symbols[item.dot];
        if (cfg.has(next)) {
          cfg.get(next)!.forEach((_, alt) => add(k, { rule: next, alt, dot: 0, origin: k }));
          // A completed nullable rule at k: advance past it now too (Aycock-Horspool).
          if (nullable(cfg, next)) add(k, { ...item, dot: item.dot + 1 });
        } else if (k < chars.length && next === chars[k]) add(k + 1, { ...item, dot: item.dot + 1 });
      }
      if (k > 0) live.push(sets[k].length > 0);
    }
    const accepted = sets[chars.length].some((it) => it.alt === -1 && it.dot === 1);
    // The automaton reads bytes: a character's prefix is live where the character is (multi-byte ones don't occur here).
    return { live, accepted };
  }

  const nullableCache = new WeakMap<Cfg, Set<string>>();
  function nullable(cfg: Cfg, name: string): boolean {
    let set = nullableCache.get(cfg);
    if (!set) {
      set = new Set();
      for (let changed = true; changed; ) {
        changed = false;
        for (const [rule, alts] of cfg) {
          if (!set.has(rule) && alts.some((alt) => alt.every((s) => set!.has(s)))) {
            set.add(rule);
            changed = true;
          }
        }
      }
      nullableCache.set(cfg, set);
    }
    return set.has(name);
  }

  const FIXED: Cfg[] = [
    new Map([['root', [['(', 'root', ')', 'root'], []]]]),
    new Map([
      ['root', [['e']]],
      ['e', [['t', 'm']]],
      ['m', [['+', 't', 'm'], []]],
      ['t', [['f', 'n']]],
      ['n', [['*', 'f', 'n'], []]],
      ['f', [['1'], ['2'], ['(', 'e', ')']]],
    ]),
    // Nullable rules before and after recursion.
    new Map([
      ['root', [['na', '(', 'root', 'nb'], ['no', '1', 'root'], []]],
      ['na', [['a'], []]],
      ['nb', [[')'], ['no', ')', 'nb']]],
      ['no', [['+'], []]],
    ]),
  ];
  const TERMINALS = ['(', ')', 'a', 'b', '1', '+'];

  function randomCfg(rand: Rand): Cfg {
    const names = ['root', 'p', 'q'].slice(0, 1 + Math.floor(rand() * 3));
    const cfg: Cfg = new Map();
    for (const name of names) {
      const alts: string[][] = [];
      const n = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) alts.push(Array.from({ length: Math.floor(rand() * 4) }, () => (rand() < 0.35 ? pick(rand, names) : pick(rand, TERMINALS))));
      cfg.set(name, alts);
    }
    return cfg;
  }

  it('accepts the same texts, and finds the same prefixes dead (seeded, fixed and random grammars)', () => {
    const rand = seededRandom(7);
    const cfgs = [...FIXED];
    let refused = 0;
    while (cfgs.length < 60) {
      const cfg = randomCfg(rand);
      try {
        compileGrammar(gbnfOf(cfg));
        cfgs.push(cfg);
      } catch (err) {
        if (!(err instanceof GrammarSyntaxError) || !/left recursion|derives no finite text/.test(err.message)) throw err;
        refused++;
      }
    }
    let accepted = 0;
    for (const cfg of cfgs) {
      const automaton = compileGrammar(gbnfOf(cfg));
      const alphabet = [...new Set([...cfg.values()].flat(2).filter((s) => !cfg.has(s)))];
      if (alphabet.length === 0) alphabet.push('a');
      for (let t = 0; t < 60; t++) {
        const text = Array.from({ length: Math.floor(rand() * 9) }, () => pick(rand, alphabet)).join('');
        const expected = earley(cfg, text);
        expect(trace(automaton, text), `${gbnfOf(cfg)} on ${JSON.stringify(text)}`).toEqual(expected);
        if (expected.accepted) accepted++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(300);
  });
});

/** llama.cpp's grammars/json.gbnf, as it ships. */
const JSON_GBNF = String.raw`root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
`;

describe("llama.cpp's JSON grammar", () => {
  function randomValue(rand: Rand, depth: number): unknown {
    const r = rand();
    if (depth > 3 || r < 0.3) {
      return pick(rand, [true, false, null, 0, -12, 3.25, 1e5, 'plain', 'é "quoted" \\ back\nline', '😀 emoji', '\u0001 control', '']);
    }
    if (r < 0.65) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    const obj: Record<string, unknown> = {};
    for (let i = Math.floor(rand() * 4); i > 0; i--) obj[pick(rand, ['a', 'name', 'ключ', 'k "q"'])] = randomValue(rand, depth + 1);
    return obj;
  }

  function deep(levels: number): string {
    return `{"a":${'['.repeat(levels - 1)}"ü"${']'.repeat(levels - 1)}}`;
  }

  it('accepts JSON objects JSON.parse reads, compact or indented, 100 deep and with non-ASCII strings; refuses them corrupted', () => {
    const started = performance.now();
    const automaton = compileGrammar(JSON_GBNF);
    const compileMs = performance.now() - started;
    expect(compileMs).toBeLessThan(500);
    const rand = seededRandom(3);
    const texts = [deep(100), '{}', '{"a": {"b": [1, 2.5, -0.5e3]}}'];
    for (let i = 0; i < 150; i++) {
      const value = { root: randomValue(rand, 0) };
      texts.push(JSON.stringify(value), JSON.stringify(value, null, 2));
    }
    let refused = 0;
    for (const text of texts) {
      expect(JSON.parse(text)).toBeDefined();
      expect(automaton.accepting(run(automaton, text)), text).toBe(true);
      // Corrupted: a character dropped, or one inserted; what JSON.parse refuses, the grammar refuses.
      const chars = [...text];
      const at = Math.floor(rand() * chars.length);
      const corrupt = rand() < 0.5 ? [...chars.slice(0, at), ...chars.slice(at + 1)].join('') : [...chars.slice(0, at), pick(rand, ['{', ']', '"', ',', ':', 'x']), ...chars.slice(at)].join('');
      let parses = true;
      try {
        JSON.parse(corrupt);
      } catch {
        parses = false;
      }
      if (!parses) {
        expect(automaton.accepting(run(automaton, corrupt)), corrupt).toBe(false);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
    expect(automaton.accepting(run(automaton, '[1]'))).toBe(false); // root is an object
    expect(run(automaton, '{"a":01}')).toBe(DEAD);
  });

  it('keeps every state live: from states texts reach, some bytes lead to a sentence', () => {
    const automaton = compileGrammar(JSON_GBNF);
    const rand = seededRandom(9);
    const texts = [deep(100), JSON.stringify({ x: [1, { y: 'é😀' }], z: null })];
    let checked = 0;
    for (const text of texts) {
      const bytes = encoder.encode(text);
      for (let k = 0; k < 40; k++) {
        const cut = Math.floor(rand() * bytes.length);
        const state = automaton.follow(0, bytes, 0, cut);
        expect(state).not.toBe(DEAD);
        // A walk over nextBytes, closing what is open first: an accepting state within a few hundred bytes, every state on the way live.
        let s = state;
        let found = automaton.accepting(s);
        for (let steps = 0; steps < 400 && !found; steps++) {
          const next = automaton.nextBytes(s);
          expect(next.length).toBeGreaterThan(0);
          const b = [0x22, 0x5d, 0x7d, 0x3a, 0x30].find((c) => next.includes(c)) ?? next[0];
          s = automaton.follow(s, Uint8Array.of(b), 0, 1);
          expect(s).not.toBe(DEAD);
          found = automaton.accepting(s);
        }
        expect(found, `${text.slice(0, cut)}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBe(80);
  });
});

describe('limits', () => {
  it('ends with AutomatonLimitError where configurations multiply (an ambiguous grammar) or states run past their bound', () => {
    // Each x opens a call that returns to one of two places: the stacks after n of them are 2^n.
    const ambiguous = compileGrammar('root ::= a\na ::= "x" a | "x" a "y" | ""', { maxBuildWork: 200_000 });
    expect(() => run(ambiguous, 'x'.repeat(40))).toThrow(AutomatonLimitError);
    const nested = compileGrammar('root ::= "(" root ")" | ""', { maxDfaStates: 50 });
    expect(() => run(nested, '('.repeat(100))).toThrow(AutomatonLimitError);
    expect(run(compileGrammar('root ::= "(" root ")" | ""'), '('.repeat(100) + ')'.repeat(100))).not.toBe(DEAD);
  });

  it("stops a closure that multiplies as it is built, not after: nullable rules nested in pairs reach 2^23 stacks in the first configuration", () => {
    const nestedPairs = (depth: number): string => {
      let text = 'root ::= r1 r1\n';
      for (let i = 1; i < depth; i++) text += `r${i} ::= r${i + 1} r${i + 1}\n`;
      return `${text}r${depth} ::= "x" | ""\n`;
    };
    // The pool's one thread was held 13-18 s, and a 500 came back ("Set maximum size exceeded"), before the cap.
    expect(() => checkGrammar(nestedPairs(23))).toThrow(AutomatonLimitError);
    expect(() => checkGrammar(nestedPairs(23))).toThrow(`${MAX_CLOSURE_VISITS} configurations in one step`);
    // Shallower, it fits: 2^12 stacks.
    expect(() => checkGrammar(nestedPairs(12))).not.toThrow();
  });

  it('charges a visit as WORK_PER_VISIT of building, so a grammar ends within its bounds after about as much time as a regex would', () => {
    // Each x opens a call that may return to one of two places (2^n stacks after n of them): unbounded, this took 12 s a step.
    const ambiguous = compileGrammar('root ::= "a" root "b" | "a" root "c" | "d"');
    const before = ambiguous.workDone;
    const started = performance.now();
    expect(() => run(ambiguous, 'a'.repeat(40))).toThrow(AutomatonLimitError);
    // Stopped at the automaton's own work bound (40M) or a step's cap, whichever came first: never much past either,
    // and, a visit counted as WORK_PER_VISIT, within the time a regex's bound allows (~0.2-0.5 s here; 12 s a step before).
    expect(ambiguous.workDone - before).toBeLessThanOrEqual(40_000_000 + MAX_CLOSURE_VISITS * WORK_PER_VISIT);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('finds the tail calls in time linear in the grammar: many calls returning into one long chain of optional nothing', () => {
    // Walked forwards from each of the 3,000 returns, the chain of ~48,000 Epsilon states took 11 s (122 s at the bounds).
    const chained = `root ::= (${Array.from({ length: 3000 }, () => 'x""?').join('|')}) ${Array.from({ length: 12 }, () => '""{0,2000}').join(' ')}\nx ::= "a"`;
    const started = performance.now();
    const automaton = compileGrammar(chained);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(automaton.accepting(run(automaton, 'a'))).toBe(true);
    expect(run(automaton, 'aa')).toBe(DEAD);
  });

  it('starts its next closure clean after one stopped by a bound, and says it used its limits (so the pool builds afresh)', () => {
    // 'x' opens 700 nested calls: their stacks pass what 2 states may hold (512 entries) in the first closure.
    const rules = ['root ::= "s" r1 | "q" "z"', ...Array.from({ length: 699 }, (_, i) => `r${i + 1} ::= r${i + 2} "x" | "w"`), 'r700 ::= "w"'];
    const automaton = compileGrammar(rules.join('\n'), { maxDfaStates: 2 });
    expect(() => run(automaton, 's')).toThrow(AutomatonLimitError);
    // Admission rebuilds an automaton past half its limits: the entries held count (they did not, and it was kept).
    expect(automaton.used).toBeGreaterThanOrEqual(1);
    // The stopped closure's pairs are not left for the next one, which walked them (25,700 steps) and was charged for them.
    const before = automaton.workDone;
    expect(() => run(automaton, 'q')).toThrow(AutomatonLimitError);
    expect(automaton.workDone - before).toBeLessThan(20 * WORK_PER_VISIT);
  });

  it('follows right recursion at a constant cost a byte: a call returning to its rule\'s end keeps no frame', () => {
    const quoted = compileGrammar('root ::= "\\"" chars "\\""\nchars ::= [a-z ] chars | ""');
    const start = quoted.workDone;
    const text = encoder.encode(`"${'ab c'.repeat(5_000)}"`);
    const end = quoted.follow(0, text, 0, text.length);
    expect(quoted.accepting(end)).toBe(true);
    // 20,002 bytes; with a frame per byte each closure walked back through all of them (the 10M bound ran out after ~700).
    expect(quoted.workDone - start).toBeLessThan(200 * WORK_PER_VISIT);
    expect(quoted.stateCount).toBeLessThanOrEqual(4);
    expect(quoted.stackCount).toBeLessThanOrEqual(2);
    // Right recursion through another rule, and under root itself, as well.
    const underRoot = compileGrammar('root ::= "x" root | "y"');
    expect(underRoot.accepting(run(underRoot, 'x'.repeat(10_000) + 'y'))).toBe(true);
    expect(underRoot.stateCount).toBeLessThanOrEqual(3);
    expect(run(underRoot, 'x'.repeat(10) + 'yx')).toBe(DEAD);
  });

  it('reports its building for the per-request bounds, and follows built states alone with followBuilt', () => {
    const automaton = compileGrammar('root ::= "(" root ")" | "x"');
    const before = { work: automaton.workDone, states: automaton.stateCount };
    const bytes = encoder.encode('((x))');
    expect(automaton.followBuilt(0, bytes, 0, bytes.length)).toBe(-2);
    const end = automaton.follow(0, bytes, 0, bytes.length);
    expect(automaton.accepting(end)).toBe(true);
    expect(automaton.workDone).toBeGreaterThan(before.work);
    expect(automaton.stateCount).toBeGreaterThan(before.states);
    expect(automaton.followBuilt(0, bytes, 0, bytes.length)).toBe(end);
    expect(automaton.used).toBeGreaterThan(0);
  });
});
