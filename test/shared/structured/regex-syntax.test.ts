import { describe, expect, it } from 'vitest';
import { RegexSyntaxError, parseRegex, parseRegexWithCalls } from '../../../shared/structured/regex-syntax';

function refusal(pattern: string): RegexSyntaxError {
  try {
    parseRegex(pattern);
  } catch (error) {
    if (error instanceof RegexSyntaxError) return error;
    throw error;
  }
  throw new Error(`${pattern} parsed`);
}

describe('the regex parser', () => {
  it.each([
    ['ab(?=c)', 2, /lookahead is not supported: a structured output's regex must be a regular language \(at 2\)/],
    ['a(?!b)', 1, /lookahead is not supported/],
    ['(?<=a)b', 0, /lookbehind is not supported/],
    ['(?<!a)b', 0, /lookbehind is not supported/],
    ['(a)\\1', 3, /backreferences are not supported/],
    ['(?<n>a)\\k<n>', 7, /backreferences are not supported/],
    ['(?P<n>a)(?P=n)', 8, /backreferences are not supported/],
    ['a\\bc', 1, /word boundaries \(\\b\) are not supported/],
    ['a\\B', 1, /word boundaries \(\\B\) are not supported/],
    ['(?i)abc', 0, /inline flags/],
    ['(?i:a)', 0, /inline flags/],
    ['(?>a)', 0, /atomic groups/],
    ['a*+', 2, /possessive quantifiers are not supported/],
    ['a{2}+', 4, /possessive/],
    ['a{3,2}', 1, /repeat count \{3,2\} has its minimum above its maximum/],
    ['a{1001}', 1, /repeat counts above 1000/],
    ['a{0,99999}', 1, /repeat counts above 1000/],
    ['(ab', 0, /unbalanced \(: this group is never closed/],
    ['a(b(c)', 1, /unbalanced \(/],
    ['ab)', 2, /unbalanced \): no group is open/],
    ['[ab', 0, /unbalanced \[: this class is never closed/],
    ['a]', 1, /unbalanced \]/],
    ['*a', 0, /nothing to repeat: \* must follow/],
    ['a|+b', 2, /nothing to repeat/],
    ['(?:{2})', 3, /nothing to repeat/],
    ['^*', 1, /nothing to repeat/],
    ['a**', 2, /a quantifier cannot follow another/],
    ['a???', 3, /a quantifier cannot follow another/],
    ['[z-a]', 1, /invalid range z-a: its start is above its end/],
    ['[\\d-z]', 1, /a class escape such as \\d cannot bound a range/],
    ['a{', 1, /\{ starts a repeat count/],
    ['a{x}', 1, /\{ starts a repeat count/],
    ['a}', 1, /unbalanced \}/],
    ['a^b', 1, /\^ is only supported at the very start/],
    ['a$b', 1, /\$ is only supported at the very end/],
    ['(a$)', 2, /\$ is only supported at the very end/],
    ['\\p{L}', 0, /Unicode property escapes/],
    ['\\cA', 0, /control escapes/],
    ['\\q', 0, /unknown escape \\q/],
    ['\\01', 0, /octal escapes/],
    ['\\xZ1', 0, /\\x needs two hex digits/],
    ['\\u12', 0, /\\u needs four hex digits/],
    ['\\u{110000}', 0, /above 10FFFF/],
    ['\\uD800', 0, /a lone surrogate/],
    ['ab\\', 2, /lone backslash/],
    ['(?<1x>a)', 0, /group name/],
    ['(?json-length:a)', 0, /\(\?json-length needs counts \{m\}, \{m,\} or \{m,n\} and a colon/],
    ['(?json-length{1,2}a)', 0, /needs counts/],
    ['a(?json-length{3,2}:a)', 1, /\(\?json-length\{3,2\} has its minimum above its maximum/],
    ['(?json-length{0,1000001}:a)', 0, /\(\?json-length counts above 1000000/],
    ['(?json-length{1}:a', 0, /unbalanced \(/],
  ])('refuses %s at %i, saying what and where', (pattern, position, message) => {
    const error = refusal(pattern);
    expect(error.position).toBe(position);
    expect(error.message).toMatch(message);
  });

  it('refuses nesting deep enough to overflow its stack as a syntax error', () => {
    expect(refusal('('.repeat(5000) + ')'.repeat(5000)).message).toMatch(/groups nest deeper than 200/);
  });

  it('reads classes: ] first, - first or last, escapes and negation', () => {
    expect(parseRegex('[]a]')).toEqual({ kind: 'chars', set: [0x5d, 0x5d, 0x61, 0x61] });
    expect(parseRegex('[-a]')).toEqual({ kind: 'chars', set: [0x2d, 0x2d, 0x61, 0x61] });
    expect(parseRegex('[a-]')).toEqual({ kind: 'chars', set: [0x2d, 0x2d, 0x61, 0x61] });
    expect(parseRegex('[\\d_\\-]')).toEqual({ kind: 'chars', set: [0x2d, 0x2d, 0x30, 0x39, 0x5f, 0x5f] });
    expect(parseRegex('[^\\x00-\\x{10}]'.replace('\\x{10}', '\\u{10FFFF}'))).toEqual({ kind: 'chars', set: [] });
    // A negated class outside the surrogates' gap.
    expect(parseRegex('[^a]')).toEqual({ kind: 'chars', set: [0, 0x60, 0x62, 0xd7ff, 0xe000, 0x10ffff] });
  });

  it('reads escapes, astral characters and surrogate-pair escapes as one code point each', () => {
    const one = (cp: number) => ({ kind: 'chars', set: [cp, cp] });
    expect(parseRegex('😀')).toEqual(one(0x1f600));
    expect(parseRegex('\\uD83D\\uDE00')).toEqual(one(0x1f600));
    expect(parseRegex('\\u{1F600}')).toEqual(one(0x1f600));
    expect(parseRegex('\\x41')).toEqual(one(0x41));
    expect(parseRegex('\\0')).toEqual(one(0));
    expect(parseRegex('\\"')).toEqual(one(0x22));
    expect(parseRegex('\\/')).toEqual(one(0x2f));
  });

  it('takes ^ and $ at the ends, named groups and lazy quantifiers as plain structure', () => {
    const a = { kind: 'chars', set: [0x61, 0x61] };
    expect(parseRegex('^a$')).toEqual(a);
    expect(parseRegex('(?P<x>a)')).toEqual(a);
    expect(parseRegex('(?<x>a)')).toEqual(a);
    expect(parseRegex('a{2,}?')).toEqual({ kind: 'repeat', item: a, min: 2, max: Infinity });
    expect(parseRegex('a|')).toEqual({ kind: 'alternation', items: [a, { kind: 'empty' }] });
    expect(parseRegex('()')).toEqual({ kind: 'empty' });
  });

  it("reads this server's (?json-length{m,n}:...) as a length group around its contents, any count form", () => {
    const a = { kind: 'chars', set: [0x61, 0x61] };
    const plus = { kind: 'repeat', item: a, min: 1, max: Infinity };
    expect(parseRegex('(?json-length{2,5}:a+)')).toEqual({ kind: 'jsonLength', item: plus, min: 2, max: 5 });
    expect(parseRegex('(?json-length{3}:a+)')).toEqual({ kind: 'jsonLength', item: plus, min: 3, max: 3 });
    expect(parseRegex('(?json-length{3,}:a+)')).toEqual({ kind: 'jsonLength', item: plus, min: 3, max: Infinity });
    expect(parseRegex('"(?json-length{0}:)"')).toEqual({ kind: 'concat', items: [{ kind: 'chars', set: [0x22, 0x22] }, { kind: 'jsonLength', item: { kind: 'empty' }, min: 0, max: 0 }, { kind: 'chars', set: [0x22, 0x22] }] });
    // A rule call inside one is refused (its product reads bytes only).
    expect(() => parseRegexWithCalls('(?json-length{1}:(?&value))', () => 0)).toThrow(/a rule call inside \(\?json-length/);
  });
});
