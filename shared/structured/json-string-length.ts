/**
 * The content of a JSON string (the bytes between its quotes, UTF-8) read a
 * byte at a time by a small DFA that says where each code point of the
 * decoded value ends: what a regex's `(?json-length{m,n}:...)` counts
 * (regex-syntax.ts; byte-nfa.ts builds the product of the group's NFA and
 * this counter). JSON Schema's minLength and maxLength count code points of
 * the decoded value, so a character written raw is one, an escape (`\n`,
 * `\"`, `\u00e9`) is one, and an escaped surrogate pair (`\ud83d\ude00`) is
 * one; a lone escaped surrogate is one too, as JSON.parse keeps it. Bytes
 * that no JSON string holds (a raw `"`, a control, a stray backslash, a
 * malformed escape) have no way out.
 */

/** One way out of a phase: bytes `lo`..`hi` lead to `next`, ending `counted` code points (0 or 1). */
export interface LengthStep {
  readonly lo: number;
  readonly hi: number;
  readonly next: number;
  readonly counted: 0 | 1;
}

/** Where the reader stands between bytes. */
interface Phase {
  /** Between two code points: the content may end here. */
  readonly boundary: boolean;
  readonly steps: LengthStep[];
}

/** Phase 0 is the start's: between code points, no escaped high surrogate just before. */
export const LENGTH_START = 0;

const HEX_DIGITS: readonly [number, number][] = [[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]];
/** The short escapes JSON has, after the backslash: `" \ / b f n r t`. */
const SHORT_ESCAPES = [0x22, 0x2f, 0x5c, 0x62, 0x66, 0x6e, 0x72, 0x74];

/** What a \u escape's digits read so far say of it: a high (D800-DBFF) or low (DC00-DFFF) surrogate, or neither; 'd' after a first D. */
type EscapeKind = 'd' | 'high' | 'low' | 'other';

function buildPhases(): Phase[] {
  const phases: Phase[] = [];
  const ids = new Map<string, number>();
  const todo: string[] = [];
  const id = (name: string): number => {
    let found = ids.get(name);
    if (found === undefined) {
      found = phases.length;
      ids.set(name, found);
      phases.push({ boundary: name === 'start' || name === 'afterHigh', steps: [] });
      todo.push(name);
    }
    return found;
  };
  id('start');
  while (todo.length > 0) {
    const name = todo.shift()!;
    const steps = phases[ids.get(name)!].steps;
    const add = (lo: number, hi: number, next: string, counted: 0 | 1): void => {
      steps.push({ lo, hi, next: id(next), counted });
    };
    const hexDigits = (next: (digit: number) => string, counted: (digit: number) => 0 | 1 = () => 0): void => {
      // Each digit on its own: which one it is can matter (a D, an 8 to F after it).
      for (const [lo, hi] of HEX_DIGITS) for (let b = lo; b <= hi; b++) add(b, b, next(b), counted(b));
    };
    const [kind, ...rest] = name.split(':');
    switch (kind) {
      case 'start':
      case 'afterHigh': {
        // A raw character: counted at its first byte; a multi-byte one's continuations follow.
        add(0x20, 0x21, 'start', 1);
        add(0x23, 0x5b, 'start', 1);
        add(0x5c, 0x5c, `escape:${kind === 'afterHigh' ? 1 : 0}`, 0);
        add(0x5d, 0x7f, 'start', 1);
        add(0xc2, 0xdf, 'cont:1', 1);
        add(0xe0, 0xef, 'cont:2', 1);
        add(0xf0, 0xf4, 'cont:3', 1);
        break;
      }
      case 'cont': {
        const left = Number(rest[0]);
        add(0x80, 0xbf, left === 1 ? 'start' : `cont:${left - 1}`, 0);
        break;
      }
      case 'escape': {
        for (const b of SHORT_ESCAPES) add(b, b, 'start', 1);
        add(0x75, 0x75, `u:${rest[0]}:0:other`, 0);
        break;
      }
      case 'u': {
        // `u:<after a high surrogate>:<digits read>:<what they say>`.
        const afterHigh = rest[0];
        const read = Number(rest[1]);
        const seen = rest[2] as EscapeKind;
        if (read < 3) {
          const next = (digit: number): string => {
            const c = String.fromCharCode(digit).toLowerCase();
            let now: EscapeKind = seen;
            if (read === 0) now = c === 'd' ? 'd' : 'other';
            else if (read === 1 && seen === 'd') now = '89ab'.includes(c) ? 'high' : 'cdef'.includes(c) ? 'low' : 'other';
            // Only a low surrogate needs to know what came before it.
            return `u:${now === 'other' || now === 'high' ? 0 : afterHigh}:${read + 1}:${now}`;
          };
          hexDigits(next);
        } else if (seen === 'high') {
          hexDigits(() => 'afterHigh', () => 1);
        } else {
          // A low surrogate right after a high one ends the pair's one code point, counted at the high one.
          hexDigits(() => 'start', () => (seen === 'low' && afterHigh === '1' ? 0 : 1));
        }
        break;
      }
    }
  }
  for (const phase of phases) phase.steps.sort((a, b) => a.lo - b.lo);
  return phases;
}

const PHASES = buildPhases();

/** How many phases the counter has (each a small number from 0). */
export const LENGTH_PHASES = PHASES.length;

/** Whether the content may end in `phase` (between code points). */
export function lengthBoundary(phase: number): boolean {
  return PHASES[phase].boundary;
}

/** The ways out of `phase`, by ascending byte range, disjoint. */
export function lengthSteps(phase: number): readonly LengthStep[] {
  return PHASES[phase].steps;
}
