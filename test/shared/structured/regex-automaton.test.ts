import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../shared/seeded-random';
import type { CodePointSet } from '../../../shared/structured/code-point-set';
import { type RegexNode, parseRegex } from '../../../shared/structured/regex-syntax';
import {
  AutomatonLimitError,
  RegexAutomaton,
  RegexSyntaxError,
  RegexTooLargeError,
  checkRegex,
  compileRegex,
} from '../../../shared/structured/regex-automaton';
import { DEAD } from '../../../shared/structured/text-automaton';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function run(automaton: RegexAutomaton, text: string): number {
  const bytes = encoder.encode(text);
  return automaton.follow(0, bytes, 0, bytes.length);
}

function matches(automaton: RegexAutomaton, text: string): boolean {
  return automaton.accepting(run(automaton, text));
}

type Rand = () => number;
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)];

/** A pattern as we write it, and as JS's RegExp (u flag) reads the same language. */
interface Spelled {
  readonly ours: string;
  readonly js: string;
}
const same = (s: string): Spelled => ({ ours: s, js: s });

// JS differs from ours on \s (Unicode spaces), `.` (\r, U+2028/9) and some identity escapes: spelled out for it.
const LITERALS: readonly Spelled[] = [
  ...['a', 'b', 'c', '0', '7', ' ', '_', ',', '"', 'é', '€', '😀', 'ж'].map(same),
  ...['\\.', '\\*', '\\+', '\\?', '\\(', '\\)', '\\[', '\\]', '\\{', '\\}', '\\|', '\\\\', '\\^', '\\$', '\\/'].map(same),
  { ours: '\\"', js: '"' },
  { ours: '\\-', js: '-' },
  ...['\\x41', '\\u00e9', '\\u{1F600}', '\\uD83D\\uDE02', '\\n', '\\t'].map(same),
];
const SPACE_JS = ' \\t\\n\\r\\f\\v';
const ESCAPES: readonly Spelled[] = [
  ...['\\d', '\\D', '\\w', '\\W'].map(same),
  { ours: '\\s', js: `[${SPACE_JS}]` },
  { ours: '\\S', js: `[^${SPACE_JS}]` },
  { ours: '.', js: '[^\\n]' },
];
const CLASS_ITEMS: readonly Spelled[] = [
  ...['a', 'b', 'z', '0', '9', 'é', '😀', '.', '*', '\\]', '\\\\', '\\-', '\\^', 'a-c', '0-5', 'à-ÿ', '😀-😂', 'Ā-ſ', '\\d', '\\w', '\\x20-\\x2f'].map(same),
  { ours: '"', js: '"' },
  { ours: '\\s', js: SPACE_JS },
];
const QUANTIFIERS = ['*', '+', '?', '{2}', '{0,2}', '{1,3}', '{2,}', '{0}'];

function join(parts: readonly Spelled[], glue = ''): Spelled {
  return { ours: parts.map((p) => p.ours).join(glue), js: parts.map((p) => p.js).join(glue) };
}

function charClass(rand: Rand): Spelled {
  const items = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(rand, CLASS_ITEMS));
  if (rand() < 0.15) items.unshift(same('-'));
  const body = join(items);
  const negate = rand() < 0.3 ? '^' : '';
  return { ours: `[${negate}${body.ours}]`, js: `[${negate}${body.js}]` };
}

function atom(rand: Rand, depth: number): Spelled {
  const r = rand();
  if (r < 0.45 || depth > 2) return pick(rand, LITERALS);
  if (r < 0.6) return pick(rand, ESCAPES);
  if (r < 0.78) return charClass(rand);
  const inner = alternation(rand, depth + 1);
  const open = pick(rand, [same('('), same('(?:'), { ours: `(?<g${depth}>`, js: '(?:' }, { ours: `(?P<h${depth}>`, js: '(?:' }]);
  return { ours: `${open.ours}${inner.ours})`, js: `${open.js}${inner.js})` };
}

function sequence(rand: Rand, depth: number): Spelled {
  const parts: Spelled[] = [];
  const count = Math.floor(rand() * 4);
  for (let i = 0; i < count; i++) {
    const a = atom(rand, depth);
    const q = rand() < 0.35 ? pick(rand, QUANTIFIERS) + (rand() < 0.2 ? '?' : '') : '';
    parts.push({ ours: a.ours + q, js: a.js + q });
  }
  return join(parts);
}

function alternation(rand: Rand, depth: number): Spelled {
  const count = rand() < 0.7 ? 1 : 2 + Math.floor(rand() * 2);
  return join(Array.from({ length: count }, () => sequence(rand, depth)), '|');
}

function pattern(rand: Rand): Spelled {
  const body = alternation(rand, 0);
  const start = rand() < 0.1 ? '^' : '';
  const end = rand() < 0.1 ? '$' : '';
  return { ours: start + body.ours + end, js: start + body.js + end };
}

const PREFERRED = [...'abcz0579 _,"\n\t\r.*-]\\^éàÿжĀ€😀😁😂A'].map((c) => c.codePointAt(0)!);

function sampleChar(rand: Rand, set: CodePointSet): string {
  const inSet = PREFERRED.filter((cp) => {
    for (let i = 0; i < set.length; i += 2) if (cp >= set[i] && cp <= set[i + 1]) return true;
    return false;
  });
  if (inSet.length > 0 && rand() < 0.8) return String.fromCodePoint(pick(rand, inSet));
  const i = 2 * Math.floor((rand() * set.length) / 2);
  return String.fromCodePoint(set[i] + Math.floor(rand() * (set[i + 1] - set[i] + 1)));
}

/** A text in the pattern's language (undefined where a branch matches nothing). */
function sample(rand: Rand, node: RegexNode): string | undefined {
  switch (node.kind) {
    case 'empty':
      return '';
    case 'chars':
      return node.set.length === 0 ? undefined : sampleChar(rand, node.set);
    case 'concat': {
      let text = '';
      for (const item of node.items) {
        const part = sample(rand, item);
        if (part === undefined) return undefined;
        text += part;
      }
      return text;
    }
    case 'alternation':
      return sample(rand, pick(rand, node.items));
    case 'repeat': {
      const count = node.min + Math.floor(rand() * (Math.min(node.max, node.min + 3) - node.min + 1));
      let text = '';
      for (let i = 0; i < count; i++) {
        const part = sample(rand, node.item);
        if (part === undefined) return undefined;
        text += part;
      }
      return text;
    }
  }
}

function mutate(rand: Rand, text: string): string {
  const chars = [...text];
  const at = Math.floor(rand() * (chars.length + 1));
  const r = rand();
  const other = String.fromCodePoint(pick(rand, PREFERRED));
  if (r < 0.3) chars.splice(at, 1);
  else if (r < 0.6) chars.splice(at, 0, other);
  else if (r < 0.8) chars.splice(at, 1, other);
  else chars.length = at;
  return chars.join('');
}

function randomText(rand: Rand): string {
  return Array.from({ length: Math.floor(rand() * 6) }, () => String.fromCodePoint(pick(rand, PREFERRED))).join('');
}

/** Bytes from `state` to the nearest accepting state, by breadth-first search over the DFA. */
function completion(automaton: RegexAutomaton, state: number): Uint8Array | undefined {
  const one = new Uint8Array(1);
  const from = new Map<number, [number, number]>([[state, [-1, -1]]]);
  const queue = [state];
  for (let head = 0; head < queue.length && head < 5000; head++) {
    const s = queue[head];
    if (automaton.accepting(s)) {
      const path: number[] = [];
      for (let at = s; at !== state; at = from.get(at)![0]) path.unshift(from.get(at)![1]);
      return Uint8Array.from(path);
    }
    for (const b of automaton.nextBytes(s)) {
      one[0] = b;
      const t = automaton.follow(s, one, 0, 1);
      if (!from.has(t)) {
        from.set(t, [s, b]);
        queue.push(t);
      }
    }
  }
  return undefined;
}

function expectNextBytesExact(automaton: RegexAutomaton, state: number): void {
  const one = new Uint8Array(1);
  const leading: number[] = [];
  for (let b = 0; b < 256; b++) {
    one[0] = b;
    if (automaton.follow(state, one, 0, 1) !== DEAD) leading.push(b);
  }
  expect(automaton.nextBytes(state)).toEqual(leading);
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

describe('the regex automaton against JS RegExp', () => {
  it('agrees on full match, keeps every prefix it passes live, and says which bytes lead on', () => {
    const rand = seededRandom(70);
    let positives = 0;
    let negatives = 0;
    let deadChecked = 0;
    for (let p = 0; p < 600; p++) {
      const spelled = pattern(rand);
      const context = `${spelled.ours}  (JS: ${spelled.js})`;
      const js = new RegExp(`^(?:${spelled.js})$`, 'u');
      let automaton: RegexAutomaton;
      try {
        automaton = compileRegex(spelled.ours);
      } catch (error) {
        // Only a pattern that matches nothing may be refused; JS then matches nothing either.
        expect(String(error), context).toMatch(/matches no text/);
        continue;
      }
      const tree = parseRegex(spelled.ours);
      const texts: string[] = [];
      for (let i = 0; i < 8; i++) {
        const text = sample(rand, tree);
        if (text !== undefined) texts.push(text, mutate(rand, text));
      }
      for (let i = 0; i < 4; i++) texts.push(randomText(rand));
      const members = texts.filter((t) => js.test(t)).map((t) => encoder.encode(t));
      for (const text of texts) {
        const bytes = encoder.encode(text);
        const expected = js.test(text);
        const where = `${context} on ${JSON.stringify(text)}`;
        let state = 0;
        let deadAt = -1;
        for (let i = 0; i < bytes.length; i++) {
          state = automaton.follow(state, bytes, i, i + 1);
          if (state === DEAD) {
            deadAt = i;
            break;
          }
        }
        expect(state === DEAD ? false : automaton.accepting(state), where).toBe(expected);
        expect(automaton.follow(0, bytes, 0, bytes.length), where).toBe(state === DEAD ? DEAD : state);
        if (expected) {
          positives++;
          expect(deadAt, where).toBe(-1);
          expectNextBytesExact(automaton, state);
          continue;
        }
        negatives++;
        if (deadAt >= 0) {
          // No text of the language seen begins with the bytes that went DEAD.
          const deadPrefix = bytes.subarray(0, deadAt + 1);
          expect(members.some((m) => startsWith(m, deadPrefix)), where).toBe(false);
          deadChecked++;
        } else {
          // A live state: the shortest way on reaches a text JS matches too.
          const rest = completion(automaton, state);
          expect(rest, where).toBeDefined();
          expect(js.test(text + decoder.decode(rest)), `${where} + ${JSON.stringify(decoder.decode(rest))}`).toBe(true);
          expectNextBytesExact(automaton, state);
        }
      }
    }
    // The generator must exercise both sides.
    expect(positives).toBeGreaterThan(5000);
    expect(negatives).toBeGreaterThan(4000);
    expect(deadChecked).toBeGreaterThan(3000);
  });
});

describe('the regex automaton', () => {
  const person = '\\{"name": "[^"\\\\]{1,20}", "age": (0|[1-9][0-9]{0,2})\\}';

  it('matches a JSON-shaped pattern whole, not a prefix of it nor past it', () => {
    const automaton = compileRegex(person);
    expect(matches(automaton, '{"name": "Zoë 😀", "age": 42}')).toBe(true);
    expect(matches(automaton, '{"name": "Bob", "age": 042}')).toBe(false);
    expect(matches(automaton, '{"name": "Bob", "age": 42')).toBe(false);
    expect(run(automaton, '{"name": "Bob", "age": 42')).not.toBe(DEAD);
    expect(run(automaton, '{"name": "Bob", "age": 42} ')).toBe(DEAD);
    expect(run(automaton, '{"name": "a"b')).toBe(DEAD);
    expect(automaton.nextBytes(0)).toEqual([0x7b]);
    // Inside the name: the closing quote, or any byte that starts a character but \ (and " after 20).
    const inName = automaton.nextBytes(run(automaton, '{"name": "x'));
    expect(inName).toContain(0x22);
    expect(inName).toContain(0xf0);
    expect(inName).not.toContain(0x5c);
    expect(inName).not.toContain(0x80); // a continuation byte cannot start a character
    expect(inName).not.toContain(0xc0); // never in UTF-8
    expect(automaton.nextBytes(run(automaton, `{"name": "${'é'.repeat(20)}`))).toEqual([0x22]);
  });

  it('keeps a branch that matches nothing dead, and refuses a pattern that matches nothing', () => {
    const automaton = compileRegex('a|[^\\s\\S]b');
    expect(matches(automaton, 'a')).toBe(true);
    expect(run(automaton, 'b')).toBe(DEAD);
    // x is only a way into nothing: not a byte that leads on.
    expect(compileRegex('x[^\\s\\S]|y').nextBytes(0)).toEqual([0x79]);
    expect(() => compileRegex('[^\\s\\S]')).toThrow(/matches no text/);
    expect(() => checkRegex('x[^\\d\\D]*y(?:[^\\w\\W])')).toThrow(RegexSyntaxError);
  });

  it('builds its DFA lazily: a long counted class costs nothing until followed', () => {
    const automaton = compileRegex('[a-z]{1,1000}');
    expect(automaton.stateCount).toBe(1);
    expect(matches(automaton, 'a'.repeat(1000))).toBe(true);
    expect(matches(automaton, 'a'.repeat(1001))).toBe(false);
  });

  it('throws RegexTooLargeError (a RegexSyntaxError) for a pattern past the NFA limit, from checkRegex too, quickly', () => {
    const started = performance.now();
    expect(() => checkRegex('((a{1000}){1000}){1000}')).toThrow(RegexTooLargeError);
    expect(() => checkRegex('((a{1000}){1000}){1000}')).toThrow(RegexSyntaxError);
    expect(() => compileRegex('(.{1000}){1000}')).toThrow(/the pattern is too large/);
    expect(performance.now() - started).toBeLessThan(2500);
    // Repeats of what adds no state (an empty group, x{0}) add none, but cost their compiles: bounded with the states.
    for (const pattern of ['(?:(?:(?:){1000}){1000}){1000}', '(?:(?:(?:x{0}){1000}){1000}){1000}a']) {
      const at = performance.now();
      expect(() => checkRegex(pattern)).toThrow(RegexTooLargeError);
      expect(performance.now() - at).toBeLessThan(1500);
    }
    expect(() => checkRegex('(?:){1000}a')).not.toThrow();
    expect(() => compileRegex('abcdefgh', { maxNfaStates: 5 })).toThrow(RegexTooLargeError);
    expect(() => checkRegex('abcdefgh', { maxNfaStates: 9 })).not.toThrow();
  });

  it('throws AutomatonLimitError when following texts would make DFA states past its limit', () => {
    // The n-th byte from the end is an a: 2^n subsets.
    const automaton = compileRegex('(a|b)*a(a|b){12}', { maxDfaStates: 100 });
    const rand = seededRandom(3);
    const text = Uint8Array.from({ length: 400 }, () => (rand() < 0.5 ? 0x61 : 0x62));
    expect(() => automaton.follow(0, text, 0, text.length)).toThrow(AutomatonLimitError);
    const roomy = compileRegex('(a|b)*a(a|b){12}', { maxDfaStates: 10_000 });
    expect(roomy.follow(0, text, 0, text.length)).not.toBe(DEAD);
    // Few states of many NFA states each count too: each set here holds about 1000.
    const wide = compileRegex('(?:a?){1000}', { maxDfaStates: 4 });
    expect(() => run(wide, 'a')).toThrow(/grew past its limit \(4 states\)/);
    expect(wide.stateCount).toBe(1);
  });

  it('throws AutomatonLimitError when building its states would visit NFA states past its work limit, which bounds the time a pattern takes', () => {
    // Three long optional runs: each new state's closure walks thousands of NFA states.
    const pattern = '(?:[a-z ]?){1000}(?:[a-z ]?){1000}(?:[a-z ]?){1000}';
    const text = new TextEncoder().encode('a'.repeat(40));
    const bounded = compileRegex(pattern, { maxBuildWork: 100_000 });
    expect(() => bounded.follow(0, text, 0, text.length)).toThrow(/grew past its limit \(100000 steps of building\)/);
    const roomy = compileRegex(pattern);
    expect(roomy.follow(0, text, 0, text.length)).not.toBe(DEAD);
    expect(roomy.used).toBeGreaterThan(0);
    expect(roomy.used).toBeLessThan(0.5);
    // A request's bound (TextMasks holds each request to 10M): a text that makes new states on and on stops within a fraction of a second.
    // CPU time, not wall time: the bound is on the work, and a loaded machine (CI at 04:22, 2026-12-08: 2.38 s of wall) stretches only the latter.
    const started = process.cpuUsage();
    const endless = compileRegex(pattern, { maxBuildWork: 10_000_000 });
    const long = new TextEncoder().encode('ab '.repeat(1000));
    expect(() => {
      for (let s = 0, i = 0; i < long.length; i++) s = endless.follow(s, long, i, i + 1);
    }).toThrow(AutomatonLimitError);
    expect(endless.used).toBeGreaterThanOrEqual(1);
    const cpu = process.cpuUsage(started);
    expect((cpu.user + cpu.system) / 1000).toBeLessThan(2000);
  });
});

describe("the regex automaton's (?any-tail)", () => {
  it('takes any bytes at the end once reached, and says so: every continuation is in the language there', () => {
    const automaton = compileRegex('[ \\t]*(?:[^ \\t\\[](?any-tail))?|\\[x\\]');
    expect(automaton.anyTail(0)).toBe(false);
    expect(matches(automaton, '')).toBe(true);
    expect(automaton.anyTail(run(automaton, ' '))).toBe(false);
    const free = run(automaton, ' a');
    expect(automaton.anyTail(free)).toBe(true);
    expect(automaton.accepting(free)).toBe(true);
    // Bytes that are no UTF-8 (a lone continuation byte, 0xC0) go on too, and stay there.
    const bytes = Uint8Array.from([0x80, 0xc0, 0xff, 0x5b]);
    const after = automaton.follow(free, bytes, 0, bytes.length);
    expect(automaton.anyTail(after) && automaton.accepting(after)).toBe(true);
    expect(automaton.nextBytes(free)).toHaveLength(256);
    // The other branch is held as ever; the first character is whole.
    expect(automaton.anyTail(run(automaton, '['))).toBe(false);
    expect(run(automaton, '[y')).toBe(DEAD);
    expect(automaton.follow(0, Uint8Array.from([0x80]), 0, 1)).toBe(DEAD);
  });

  it('ends the pattern: refused where anything follows it, repeats it, or inside a JSON-length group', () => {
    expect(() => compileRegex('a(?any-tail)b')).toThrow(/ends the pattern.*\(at 1\)/);
    expect(() => compileRegex('(?:a(?any-tail))*')).toThrow(/ends the pattern/);
    expect(() => compileRegex('(?json-length{1,3}:(?any-tail))')).toThrow(/inside \(\?json-length/);
    expect(() => compileRegex('(?:a(?any-tail)|b)')).not.toThrow();
  });
});
