import { describe, expect, it } from 'vitest';
import { checkGrammar, compileGrammar } from '../../../shared/structured/grammar-automaton';
import { GrammarTooLargeError, GrammarUnwritableError, jsonObjectGrammar, jsonSchemaGrammar } from '../../../shared/structured/json-schema-grammar';
import { parseRegex, RegexSyntaxError } from '../../../shared/structured/regex-syntax';
import { jsonObjectRegex, jsonSchemaRegex, SchemaError } from '../../../shared/structured/json-schema-regex';
import { compileRegex } from '../../../shared/structured/regex-automaton';
import type { TextAutomaton } from '../../../shared/structured/text-automaton';
import { seededRandom } from '../../support/seeded-random';
import { CASES, instance, layout, mutations, randomValue } from '../../support/json-schema-cases';

const encoder = new TextEncoder();

/** Whether `text` is a whole sentence of the automaton's language, its bytes followed one at a time. */
function accepts(automaton: TextAutomaton, text: string): boolean {
  const bytes = encoder.encode(text);
  let state = 0;
  for (let i = 0; i < bytes.length && state >= 0; i++) state = automaton.follow(state, bytes, i, i + 1);
  return state >= 0 && automaton.accepting(state);
}

/** How deep containers nest in a JSON-like text (brackets in strings not counted). */
function nesting(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') deepest = Math.max(deepest, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return deepest;
}

/** `depth` containers, objects and arrays in turn, around a number, with members beside each in the layout's spacing. */
function deepJson(depth: number): string {
  let text = '7';
  for (let i = 0; i < depth; i++) text = i % 2 === 0 ? `{"k${i}": ${text}, "s": "x]}"}` : `[true, ${text}, null]`;
  return text;
}

describe('jsonSchemaGrammar', () => {
  for (const c of CASES) {
    it(`agrees with the schema's regex within its depth bound on ${c.name}`, () => {
      const regex = compileRegex(jsonSchemaRegex(c.schema));
      const grammarText = jsonSchemaGrammar(c.schema);
      expect(() => checkGrammar(grammarText)).not.toThrow();
      const grammar = compileGrammar(grammarText);
      const rng = seededRandom(c.name.length * 104729);
      const texts = [...c.invalid];
      for (let i = 0; i < 60; i++) {
        const text = layout(instance(c.schema, c.schema, rng, c.depth ?? 3), rng);
        texts.push(text, ...mutations(text, rng, 6));
      }
      let accepted = 0;
      for (const text of texts.filter((t) => nesting(t) <= 3)) {
        const byRegex = accepts(regex, text);
        expect(accepts(grammar, text), text).toBe(byRegex);
        if (byRegex) accepted++;
      }
      expect(accepted).toBeGreaterThanOrEqual(60);
    });
  }

  it('follows a recursive $ref as deep as the text goes: a 6-deep tree, and refuses one wrong at depth 6', () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#' } } },
      required: ['name', 'children'],
    };
    const grammar = compileGrammar(jsonSchemaGrammar(schema));
    const tree = (depth: number, leaf: string): string => (depth === 1 ? leaf : `{"name": "n${depth}", "children": [${tree(depth - 1, leaf)}, {"name": "x", "children": []}]}`);
    const good = tree(6, '{"name": "leaf", "children": []}');
    expect(JSON.parse(good)).toBeTruthy();
    expect(accepts(grammar, good)).toBe(true);
    // The regex stops at its depth bound.
    expect(accepts(compileRegex(jsonSchemaRegex(schema)), good)).toBe(false);
    for (const leaf of ['{"name": 6, "children": []}', '{"name": "leaf"}', '{"name": "leaf", "children": [1]}', '{"children": [], "name": "leaf"}']) {
      expect(JSON.parse(tree(6, leaf))).toBeTruthy();
      expect(accepts(grammar, tree(6, leaf)), leaf).toBe(false);
    }
  });

  it('drops a recursion that never ends, as the regex does, and refuses a schema nothing satisfies', () => {
    const schema = {
      $defs: { loop: { type: 'object', properties: { next: { $ref: '#/$defs/loop' } }, required: ['next'] } },
      anyOf: [{ type: 'integer' }, { type: 'array', items: { $ref: '#/$defs/loop' } }],
    };
    const grammar = compileGrammar(jsonSchemaGrammar(schema));
    for (const text of ['3', '[]', '[ ]']) expect(accepts(grammar, text), text).toBe(true);
    for (const text of ['[{}]', '[{"next": {}}]']) expect(accepts(grammar, text), text).toBe(false);
    expect(() => jsonSchemaGrammar(schema.$defs.loop)).toThrow(SchemaError);
    expect(() => jsonSchemaGrammar({ $defs: schema.$defs, $ref: '#/$defs/loop' })).toThrow(/no JSON value satisfies the schema/);
  });

  it('is a SchemaError past its length bound or its groups\' nesting, as the regex is past its own', () => {
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, { type: 'string', format: 'date-time' }])) };
    expect(jsonSchemaGrammar(schema).length).toBeGreaterThan(1000);
    expect(() => jsonSchemaGrammar(schema, { maxLength: 1000 })).toThrow(GrammarTooLargeError);
    // Many optional properties nest groups past what a grammar's parser reads: said as the schema's size, not a fault.
    const optional = { type: 'object', properties: Object.fromEntries(Array.from({ length: 199 }, (_, i) => [`p${i}`, { type: 'integer' }])) };
    expect(() => jsonSchemaGrammar(optional)).toThrow(GrammarTooLargeError);
    // A request's regex never calls a rule.
    expect(() => parseRegex('(?&value)')).toThrow(RegexSyntaxError);
  });

  it("cannot hold a string's length beside its pattern (GBNF has no such group): a SchemaError of its own, the regex form's to take", () => {
    const code = { type: 'object', properties: { code: { type: 'string', maxLength: 4, pattern: '^[A-Z]+$' }, tree: { $ref: '#' } } };
    expect(() => jsonSchemaGrammar(code)).toThrow(GrammarUnwritableError);
    expect(new GrammarUnwritableError('x')).toBeInstanceOf(SchemaError);
    // The length alone, or the pattern alone, is GBNF as before.
    expect(() => jsonSchemaGrammar({ type: 'string', maxLength: 4 })).not.toThrow();
    expect(() => jsonSchemaGrammar({ type: 'string', pattern: '^[A-Z]+$' })).not.toThrow();
  });
});

describe('jsonObjectGrammar', () => {
  const grammar = compileGrammar(jsonObjectGrammar());

  it('takes JSON objects 10 and 100 deep, and refuses them corrupted', () => {
    for (const depth of [10, 100]) {
      const text = `{"deep": ${deepJson(depth)}}`;
      expect(nesting(text)).toBe(depth + 1);
      expect(() => JSON.parse(text)).not.toThrow();
      expect(accepts(grammar, text)).toBe(true);
      const corrupted = [
        text.slice(0, -1), // a bracket short
        `${text}}`, // one too many
        text.replace('true, ', 'true,, '),
        text.replace('"s": "x]}"', '"s" "x]}"'),
        text.replace('null]', 'null,]'),
        text.replace(`"k${depth - 2}"`, `k${depth - 2}`),
        text.replace('"k0": 7', '"k0": 07'),
        text.replace('null]', 'null}'),
      ];
      for (const bad of corrupted) {
        expect(() => JSON.parse(bad), bad.slice(0, 40)).toThrow();
        expect(accepts(grammar, bad)).toBe(false);
      }
    }
    // Not an object at the top.
    expect(accepts(grammar, deepJson(10))).toBe(false);
  });

  it("agrees with JSON mode's regex within its depth bound, its whitespace option too", () => {
    for (const whitespace of [undefined, '[ \\n]{0,2}']) {
      const options = whitespace === undefined ? {} : { whitespace };
      const regex = compileRegex(jsonObjectRegex(options));
      const ours = compileGrammar(jsonObjectGrammar(options));
      const rng = seededRandom(whitespace === undefined ? 1 : 2);
      let accepted = 0;
      for (let i = 0; i < 150; i++) {
        const value = { a: randomValue(rng, 2), b: randomValue(rng, 2) };
        const text = layout(value, rng).replace(/: /g, whitespace === undefined ? ': ' : ':\n ');
        for (const t of [text, ...mutations(text, rng, 6)].filter((x) => nesting(x) <= 3)) {
          const byRegex = accepts(regex, t);
          expect(accepts(ours, t), t).toBe(byRegex);
          if (byRegex) accepted++;
        }
      }
      expect(accepted).toBeGreaterThanOrEqual(150);
    }
  });
});
