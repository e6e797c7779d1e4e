import { describe, expect, it } from 'vitest';
import { checkGrammar, compileGrammar } from '../../../shared/structured/grammar-automaton';
import { GrammarSyntaxError, parseGrammar } from '../../../shared/structured/grammar-syntax';

const encoder = new TextEncoder();

/** Whether `text` is a sentence of `grammar`. */
function accepts(grammar: string, text: string): boolean {
  const automaton = compileGrammar(grammar);
  const bytes = encoder.encode(text);
  return automaton.accepting(automaton.follow(0, bytes, 0, bytes.length));
}

/** The sentences of `grammar` among `texts`. */
function sentences(grammar: string, texts: readonly string[]): string[] {
  return texts.filter((t) => accepts(grammar, t));
}

function refusal(grammar: string): GrammarSyntaxError {
  try {
    checkGrammar(grammar);
  } catch (err) {
    if (err instanceof GrammarSyntaxError) return err;
    throw err;
  }
  throw new Error(`accepted: ${grammar}`);
}

describe('GBNF constructs, as llama.cpp reads them', () => {
  it('literals, escapes, sequences, alternatives and groups', () => {
    expect(sentences('root ::= "ab" "c" | "x"', ['abc', 'x', 'ab', 'abcx', ''])).toEqual(['abc', 'x']);
    expect(sentences('root ::= "a" ("b" | "c") "d"', ['abd', 'acd', 'ad', 'abcd'])).toEqual(['abd', 'acd']);
    expect(sentences('root ::= "\\n\\t\\r\\\\\\"\\[\\]"', ['\n\t\r\\"[]'])).toEqual(['\n\t\r\\"[]']);
    expect(sentences('root ::= "\\x41\\u00e9\\U0001F600"', ['Aé😀', 'A'])).toEqual(['Aé😀']);
    expect(sentences('root ::= "é😀"', ['é😀'])).toEqual(['é😀']);
    expect(sentences('root ::= ""', ['', 'a'])).toEqual(['']);
    expect(sentences('root ::= "a" |', ['', 'a', 'aa'])).toEqual(['', 'a']);
  });

  it('classes: ranges, negation, escapes; and . as any character', () => {
    expect(sentences('root ::= [a-c0-1_]', ['a', 'c', '0', '1', '_', 'd', '2', ''])).toEqual(['a', 'c', '0', '1', '_']);
    expect(sentences('root ::= [^a-c\\n]', ['a', 'd', '\n', 'é', '😀'])).toEqual(['d', 'é', '😀']);
    expect(sentences('root ::= [\\x00-\\x1F\\]\\\\-]', ['\u0001', ']', '\\', '-', 'a'])).toEqual(['\u0001', ']', '\\', '-']);
    expect(sentences('root ::= [à-ÿ😀]', ['é', '😀', 'a'])).toEqual(['é', '😀']);
    expect(sentences('root ::= . .', ['ab', '\n😀', 'a', 'abc'])).toEqual(['ab', '\n😀']);
  });

  it('repeats: * + ? {m} {m,} {m,n}, on items, rules and groups', () => {
    const texts = ['', 'a', 'aa', 'aaa', 'aaaa'];
    expect(sentences('root ::= "a"*', texts)).toEqual(texts);
    expect(sentences('root ::= "a"+', texts)).toEqual(texts.slice(1));
    expect(sentences('root ::= "a"?', texts)).toEqual(['', 'a']);
    expect(sentences('root ::= "a"{2}', texts)).toEqual(['aa']);
    expect(sentences('root ::= "a"{3,}', texts)).toEqual(['aaa', 'aaaa']);
    expect(sentences('root ::= "a"{1,2}', texts)).toEqual(['a', 'aa']);
    expect(sentences('root ::= "a"{ 0 , 1 }', texts)).toEqual(['', 'a']);
    expect(sentences('root ::= x{2}\nx ::= "a" | "bb"', ['aa', 'abb', 'bbbb', 'a', 'aaa'])).toEqual(['aa', 'abb', 'bbbb']);
    expect(sentences('root ::= ("ab" | "c")+', ['ab', 'cab', 'abab', 'a', ''])).toEqual(['ab', 'cab', 'abab']);
  });

  it('rules over lines: newlines inside parentheses and after | or ::=, a line starting with |, comments, names with _ and -', () => {
    const grammar = [
      '# a comment line',
      'root ::=   # the start',
      '  my_rule-1 (',
      '    "b"   # inside a group',
      '    | "c"',
      '  ) |',
      '  "d"',
      '  | "e"',
      'my_rule-1 ::= "a"',
    ].join('\n');
    expect(sentences(grammar, ['ab', 'ac', 'd', 'e', 'a', 'b'])).toEqual(['ab', 'ac', 'd', 'e']);
    expect(sentences('root ::= "a"\r\n  | "b"\r\n', ['a', 'b'])).toEqual(['a', 'b']);
  });

  it('recursion: rules refer to each other, and to themselves after text', () => {
    expect(sentences('root ::= "(" root ")" | ""', ['', '()', '(())', '(()', '())'])).toEqual(['', '()', '(())']);
    expect(sentences('root ::= a\na ::= "x" b | "y"\nb ::= a "z"', ['y', 'xyz', 'xxyzz', 'xy'])).toEqual(['y', 'xyz', 'xxyzz']);
  });
});

describe('refusals, naming what and where', () => {
  it.each([
    ['root ::= "abc', 'unterminated string', 1, 10],
    ['root ::= [abc', 'unbalanced [', 1, 10],
    ['root ::= ("a"', 'unbalanced (', 1, 10],
    ['root ::= "a")', 'unbalanced )', 1, 13],
    ['root ::= "a"\nx ::= "\\q"', 'unknown escape \\q', 2, 8],
    ['root ::= "\\x4"', '\\x needs 2 hex digits', 1, 11],
    ['root ::= "\\uD800"', 'surrogate', 1, 11],
    // One written as itself (a JSON "\ud800" decoded), in a literal or a class (review h142).
    ['root ::= "a\uD800"', 'surrogate', 1, 12],
    ['root ::= [\uD800-\uDBFF]', 'surrogate', 1, 11],
    ['root ::= [z-a]', 'invalid range z-a', 1, 11],
    ['root ::= []', 'empty class', 1, 10],
    ['root ::= * "a"', 'nothing to repeat', 1, 10],
    ['root ::= "a"{3,2}', 'minimum 3 above its maximum 2', 1, 13],
    ['root ::= "a"{2', 'expected }', 1, 15],
    ['root ::= "a"{9999}', 'above 2000', 1, 13],
    ['root = "a"', 'expected ::=', 1, 6],
    ["root ::= 'a'", 'double quotes', 1, 10],
    ['root ::= "a"\nroot ::= "b"', "rule 'root' is defined twice (first at line 1)", 2, 1],
    ['root ::= "a" "b" )', 'unbalanced )', 1, 18],
    ['| "a"', 'starts with its name', 1, 1],
    ['', 'the grammar is empty', 1, 1],
  ])('%j: %s', (grammar, what, line, column) => {
    const err = refusal(grammar);
    expect(err.message).toContain(what);
    expect({ line: err.line, column: err.column }).toEqual({ line, column });
    expect(err.message).toContain(`(at line ${line}, column ${column})`);
  });

  it('refuses Lark, saying GBNF is served', () => {
    for (const lark of ['start: "a"\n', '%import common.WS\nroot ::= "a"', 'root ::= "a"\nvalue: "b"', 'item.2: "x"']) {
      expect(refusal(lark).message).toContain('only GBNF (`rule ::= ...`');
    }
  });

  it('refuses an undefined rule where it is referred to, and a grammar without root', () => {
    const undefinedRule = refusal('root ::= "a" item\nother ::= "b"');
    expect(undefinedRule.message).toContain("undefined rule 'item'");
    expect([undefinedRule.line, undefinedRule.column]).toEqual([1, 14]);
    expect(refusal('start ::= "a"').message).toContain("no rule 'root'");
  });

  it('refuses left recursion: direct, indirect, and behind a nullable prefix, naming the cycle', () => {
    expect(refusal('root ::= root "a" | "b"').message).toMatch(/left recursion: rule 'root' .*\(root -> root\)/);
    const indirect = refusal('root ::= "x" a\na ::= b "y" | "z"\nb ::= a "w"');
    expect(indirect.message).toMatch(/left recursion: rule 'a' .*\(a -> b -> a\)/);
    expect(indirect.line).toBe(2);
    expect(refusal('root ::= opt root "a" | "b"\nopt ::= "o"?').message).toMatch(/left recursion: rule 'root'/);
    expect(refusal('root ::= ("p" | "") ("q")* root "a" | "b"').message).toContain('left recursion');
    // Right recursion, and a nullable rule that comes after text, are taken.
    expect(() => checkGrammar('root ::= "a" root | opt\nopt ::= "o"?')).not.toThrow();
  });

  it('refuses a rule root reaches that derives no finite text, and takes one it does not reach', () => {
    const endless = refusal('root ::= "a" | loop\nloop ::= "x" loop');
    expect(endless.message).toContain("rule 'loop' derives no finite text");
    expect(endless.line).toBe(2);
    expect(refusal('root ::= "(" root ")"').message).toContain("rule 'root' derives no finite text");
    expect(() => checkGrammar('root ::= "a"\nunused ::= "x" unused')).not.toThrow();
  });

  it("names a class that matches nothing as such, and reads a file that starts with a byte-order mark", () => {
    expect(refusal('root ::= [^\\x00-\\U0010FFFF]')).toMatchObject({ message: expect.stringContaining('this class matches no character'), line: 1, column: 10 });
    expect(() => checkGrammar('\uFEFFroot ::= "a"')).not.toThrow();
  });

  it('refuses a grammar past its bounds: characters, rules, NFA states', () => {
    expect(refusal(`root ::= "${'a'.repeat(70_000)}"`).message).toContain('more than the 65536');
    const manyRules = ['root ::= r0', ...Array.from({ length: 2_001 }, (_, i) => `r${i} ::= "a"`)].join('\n');
    expect(refusal(manyRules).message).toContain('more than 2000 rules');
    expect(refusal('root ::= ((([a-z]{1000}){100}){10})').message).toContain('too large');
  });

  it('parses to one tree per rule, root found by name', () => {
    const grammar = parseGrammar('x ::= "a"\nroot ::= x x');
    expect(grammar.rules.map((r) => r.name)).toEqual(['x', 'root']);
    expect(grammar.root).toBe(1);
    expect(grammar.rules[1].body).toEqual({ kind: 'concat', items: [{ kind: 'ref', rule: 0 }, { kind: 'ref', rule: 0 }] });
  });
});
