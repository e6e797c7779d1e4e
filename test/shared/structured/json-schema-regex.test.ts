import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { integerRangeRegex } from '../../../shared/structured/integer-range-regex';
import { jsonObjectRegex, jsonSchemaRegex, SchemaError, WhitespaceError } from '../../../shared/structured/json-schema-regex';
import { jsonStringPattern } from '../../../shared/structured/json-string-pattern';
import { DEFAULT_MAX_NFA_STATES, buildByteNfa } from '../../../shared/structured/byte-nfa';
import { parseRegex } from '../../../shared/structured/regex-syntax';
import type { ExpressionNode } from '../../../shared/structured/expression-node';
import { textLengthBounds } from '../../../shared/structured/text-length-bounds';
import { isIPv4, isIPv6 } from 'node:net';
import { seededRandom } from '../../support/seeded-random';
import { CASES, between, compile, compileWithEngine, instance, layout, mutations, randomString, randomValue } from '../../support/json-schema-cases';
import { refusalOf } from '../../support/refusal';

describe('jsonSchemaRegex', () => {
  for (const c of CASES) {
    it(`matches every valid instance of ${c.name} in the layout, and none of its mutations that is not JSON`, () => {
      const re = compile(jsonSchemaRegex(c.schema));
      const rng = seededRandom(c.name.length * 7919);
      for (let i = 0; i < 150; i++) {
        const text = layout(instance(c.schema, c.schema, rng, c.depth ?? 3), rng);
        expect(re.test(text), text).toBe(true);
        for (const m of mutations(text, rng, 8)) if (re.test(m)) expect(() => JSON.parse(m), m).not.toThrow();
      }
    });

    it(`refuses invalid texts for ${c.name}`, () => {
      const re = compile(jsonSchemaRegex(c.schema));
      for (const text of c.invalid) expect(re.test(text), text).toBe(false);
    });
  }

  it('gets the commas right for every subset of optional properties, with required ones anywhere', () => {
    const names = ['a', 'b', 'c', 'd'];
    for (let req = 0; req < 16; req++) {
      const required = names.filter((_, i) => req & (1 << i));
      const re = compile(jsonSchemaRegex({ type: 'object', properties: Object.fromEntries(names.map((n) => [n, { type: 'integer' }])), required }));
      for (let present = 0; present < 16; present++) {
        const keys = names.filter((_, i) => present & (1 << i));
        const text = `{${keys.map((k) => `"${k}":1`).join(',')}}`;
        expect(re.test(text), `${text} required ${required}`).toBe(required.every((r) => keys.includes(r)));
        expect(re.test(`{${keys.map((k) => `"${k}" : 1`).join(' , ')}}`)).toBe(required.every((r) => keys.includes(r)));
        if (keys.length > 0) {
          expect(re.test(`{${keys.map((k) => `"${k}":1`).join(',')},}`)).toBe(false);
          expect(re.test(`{,${keys.map((k) => `"${k}":1`).join(',')}}`)).toBe(false);
          expect(re.test(`{${keys.map((k) => `"${k}":1`).join('')}}`)).toBe(keys.length === 1 && required.every((r) => keys.includes(r)));
        }
      }
    }
  });

  it('matches a const exactly as JSON.stringify writes it, and a type list with its keywords', () => {
    const c = compile(jsonSchemaRegex({ const: { a: [1, 'x'], b: null } }));
    expect(c.test('{"a":[1,"x"],"b":null}')).toBe(true);
    expect(c.test('{"a":[1,"x"]}')).toBe(false);
    const t = compile(jsonSchemaRegex({ type: ['string', 'null'], maxLength: 3 }));
    expect(['"abc"', 'null'].every((s) => t.test(s))).toBe(true);
    expect(['"abcd"', '1'].some((s) => t.test(s))).toBe(false);
    const e = compile(jsonSchemaRegex({ type: 'string', enum: ['x', 1] }));
    expect([e.test('"x"'), e.test('1')]).toEqual([true, false]);
  });

  it('refuses a const or enum number the body could not hold (1e400, an integer past 2^53), which it would write as another value', () => {
    for (const schema of [{ type: 'number', const: Infinity }, { type: 'object', properties: { a: { enum: [1, -Infinity] } } }, { type: 'array', items: { const: [2, Infinity] } }]) {
      expect(() => jsonSchemaRegex(schema), JSON.stringify(schema)).toThrow(/too large to be read/);
    }
    expect(() => jsonSchemaRegex({ enum: [12345678901234567891] })).toThrow(/past 2\^53/);
    // Numbers it holds exactly are written as the schema has them.
    expect(compile(jsonSchemaRegex({ enum: [9007199254740991, 0.1, -2.5e-7] })).test('0.1')).toBe(true);
  });

  it('counts code points in a length-limited string, never an escaped surrogate pair as two', () => {
    const re = compile(jsonSchemaRegex({ type: 'string', minLength: 2, maxLength: 2 }));
    expect(['"a😀"', '"\\u0001\\n"', '"\\"\\\\"'].map((t) => re.test(t))).toEqual([true, true, true]);
    // A pair is written raw: escaped, it is refused, so never read as two code points.
    expect(['"\\ud83d\\ude00"', '"a\\ud83d\\ude00"', '"ab😀"'].map((t) => re.test(t))).toEqual([false, false, false]);
  });

  it('keeps a length-limited string small enough for the regex engine: maxLength 2,000 fits its NFA', () => {
    const r = jsonSchemaRegex({ type: 'string', maxLength: 2000 });
    expect(buildByteNfa(parseRegex(r), 1e7).stateCount).toBeLessThan(DEFAULT_MAX_NFA_STATES);
    expect(compile(r).test(`"${'é'.repeat(2000)}"`)).toBe(true);
  });

  it('enforces a pattern on the decoded string, writing quotes and backslashes it allows as escapes', () => {
    const pattern = '^[a-z"\\\\]+\\.?.$';
    const re = compile(jsonSchemaRegex({ type: 'string', pattern }));
    const decoded = new RegExp(`^(?:${pattern.slice(1, -1)})$`, 'u');
    const rng = seededRandom(5);
    let matched = 0;
    for (let i = 0; i < 3000; i++) {
      const text = JSON.stringify(randomString(rng, 1, 5).replace(/[A-Z0-9]/g, 'q'));
      const raw = `"${text.slice(1, -1).replace(/\\"/g, '"')}"`;
      if (re.test(raw)) expect(() => JSON.parse(raw), raw).not.toThrow();
      expect(re.test(text), text).toBe(decoded.test(JSON.parse(text)));
      if (re.test(text)) matched++;
    }
    expect(matched).toBeGreaterThan(50);
    expect(re.test('"ab"c"')).toBe(false);
  });

  it('bounds open values by maxDepth and lets the whitespace pattern be chosen', () => {
    const deep = '[[[1]]]';
    expect(compile(jsonSchemaRegex({}, { maxDepth: 3 })).test(deep)).toBe(true);
    expect(compile(jsonSchemaRegex({}, { maxDepth: 2 })).test(deep)).toBe(false);
    const schema = { type: 'object', properties: { a: { type: 'array', items: { type: 'integer' } } }, required: ['a'] };
    const lines = compile(jsonSchemaRegex(schema, { whitespace: '[ \\n]*' }));
    expect(lines.test('{\n  "a": [\n    1,\n    2\n  ]\n}')).toBe(true);
    const tight = compile(jsonSchemaRegex(schema, { whitespace: '' }));
    expect([tight.test('{"a":[1,2]}'), tight.test('{"a": [1,2]}')]).toEqual([true, false]);
    expect(compile(jsonSchemaRegex(schema)).test('{"a":  [1]}')).toBe(false);
    expect(() => jsonSchemaRegex(schema, { whitespace: '(?= )' })).toThrow(RangeError);
  });

  it('refuses a whitespace option that is anchored or matches what JSON does not take as whitespace, as a WhitespaceError', () => {
    const schema = { type: 'integer' };
    for (const ws of ['[ ]?$', '^ ?', '\\s*', '[ \\f]?', '.?', '(?= )']) {
      expect(() => jsonSchemaRegex(schema, { whitespace: ws }), ws).toThrow(WhitespaceError);
      expect(() => jsonSchemaRegex(schema, { whitespace: ws }), ws).not.toThrow(SchemaError);
    }
    expect(() => jsonObjectRegex({ whitespace: '\\s?' })).toThrow(WhitespaceError);
    expect(compile(jsonSchemaRegex({ type: 'array' }, { whitespace: '[ \\t\\n\\r]*' })).test('[\t1 ,\r\n2 ]')).toBe(true);
  });

  it('keeps what is wrong out of the path: message says what, path says where', () => {
    try {
      jsonSchemaRegex({ type: 'object', properties: { a: { type: 'strin' } } });
      expect.unreachable();
    } catch (e) {
      expect((e as SchemaError).path).toBe('/properties/a/type');
      expect((e as SchemaError).message).not.toContain('/properties');
    }
  });

  it('takes false properties and anyOf branches as admitting nothing, and a required name properties does not list', () => {
    const noX = compile(jsonSchemaRegex({ type: 'object', properties: { x: false, y: { type: 'integer' } } }));
    expect(['{}', '{"y":1}', '{"x":1}', '{"x":1,"y":1}'].map((t) => noX.test(t))).toEqual([true, true, false, false]);
    const branch = compile(jsonSchemaRegex({ anyOf: [false, { type: 'integer' }] }));
    expect([branch.test('1'), branch.test('"a"')]).toEqual([true, false]);
    const extra = compile(jsonSchemaRegex({ type: 'object', properties: { a: { type: 'integer' } }, required: ['b'], additionalProperties: { type: 'string' } }));
    expect(['{"b":"x"}', '{"a":1,"b":"x"}', '{"a":1}', '{"b":1}'].map((t) => extra.test(t))).toEqual([true, true, false, false]);
    expect(() => jsonSchemaRegex({ type: 'object', properties: { a: {} }, required: ['b'], additionalProperties: false })).toThrow(SchemaError);
  });

  it('writes only the regex subset the engine takes', () => {
    // The pattern parser accepts exactly the subset, so every regex built must parse under it.
    for (const c of CASES) expect(() => jsonStringPattern(jsonSchemaRegex(c.schema)), c.name).not.toThrow();
    expect(() => jsonStringPattern(jsonObjectRegex())).not.toThrow();
    expect(() => jsonStringPattern(jsonSchemaRegex({ type: 'string', pattern: '^[^a]\\s.x$' }))).not.toThrow();
  });

  it('refuses what it cannot hold exactly, with a JSON Pointer to the keyword', () => {
    const errors: [unknown, string][] = [
      [{ type: 'object', properties: { age: { type: 'integer', multipleOf: 5 } } }, '/properties/age/multipleOf'],
      [{ type: 'array', items: { type: 'string' }, uniqueItems: true }, '/uniqueItems'],
      [{ type: 'object', patternProperties: { '^x': {} } }, '/patternProperties'],
      [{ not: { type: 'string' } }, '/not'],
      [{ if: {}, then: {} }, '/if'],
      [{ type: 'object', minProperties: 1 }, '/minProperties'],
      [{ type: 'object', properties: { a: {} }, dependentRequired: { a: [] } }, '/dependentRequired'],
      [{ type: 'string', format: 'iri' }, '/format'],
      [{ type: 'object', properties: { x: { type: 'string', pattern: '(?=a)b' } } }, '/properties/x/pattern'],
      [{ type: 'string', pattern: 'a\\1' }, '/pattern'],
      [{ type: 'number', maximum: 2.5 }, '/maximum'],
      [{ type: 'number', minimum: 1, exclusiveMinimum: 0.5 }, '/exclusiveMinimum'],
      [{ type: 'object', properties: { code: { type: 'string', maxLength: 100_000, pattern: '^[a-z]+$' } } }, '/properties/code/maxLength'],
      [{ type: 'string', minLength: 2_000_000, pattern: '^[0-9a-f]+$' }, '/minLength'],
      [{ $ref: 'https://example.com/s.json' }, '/$ref'],
      [{ $defs: { a: { type: 'string' } }, $ref: '#/$defs/b' }, '/$ref'],
      [{ type: 'object', properties: { 'a/b': { type: 'strin' } } }, '/properties/a~1b/type'],
      [{ type: 'strin' }, '/type'],
      [{ allOf: [{}, {}] }, '/allOf'],
      [{ type: 'string', anyOf: [{}] }, '/type'],
      [false, ''],
      [{ type: 'integer', minimum: 5, maximum: 4 }, ''],
      // The length past what a count can say, named as given (review h135: a minLength was blamed on maxLength).
      [{ type: 'string', minLength: 1e8 }, '/minLength'],
      [{ type: 'string', maxLength: 1e8 }, '/maxLength'],
    ];
    for (const [schema, path] of errors) {
      let caught: unknown;
      try {
        jsonSchemaRegex(schema);
      } catch (e) {
        caught = e;
      }
      expect(caught, JSON.stringify(schema)).toBeInstanceOf(SchemaError);
      expect((caught as SchemaError).path, JSON.stringify(schema)).toBe(path);
    }
  });

  it('writes only dates and times every common validator takes: no year 0000, no second 60, at most 6 fraction digits', () => {
    // Pydantic refuses year 0 and a leap second (date, datetime, time), zod the second; an unbounded fraction let a
    // model write zeros until max_tokens.
    const check = (format: string, valid: string[], invalid: string[]): void => {
      const re = compileWithEngine(jsonSchemaRegex({ type: 'string', format }));
      for (const text of valid) expect(re.test(JSON.stringify(text)), `${text} as ${format}`).toBe(true);
      for (const text of invalid) expect(re.test(JSON.stringify(text)), `${text} as ${format}`).toBe(false);
    };
    check('date', ['0001-01-01', '0010-05-31', '0100-02-28', '1000-12-31', '2026-12-06', '9999-12-31'], ['0000-01-01', '2026-02-30', '2026-04-31']);
    check('date-time', ['2026-12-06T09:30:59Z', '2026-12-06T09:30:00.123456+01:00', '0001-01-01t00:00:00z'], ['2026-12-06T23:59:60Z', '2026-12-06T09:30:00.1234567Z', '0000-01-01T00:00:00Z']);
    check('time', ['09:30:00Z', '23:59:59.5-05:00'], ['23:59:60Z', '09:30:00.0000000Z']);
  });

  it('reads \\D \\W \\S in a pattern as a part of what every reader takes: \\S no space of any, \\D \\W only ASCII', () => {
    const re = compileWithEngine(jsonSchemaRegex({ type: 'string', pattern: '^\\S{2,8}$' }));
    for (const text of ['ab', 'José', 'a"b\\c', '日本語', '😀😀']) expect(re.test(JSON.stringify(text)), text).toBe(true);
    // JS's spaces, and those Python's and Rust's \s add (U+001C-U+001F, U+0085).
    for (const text of ['a b', 'a\u00a0b', 'a\u3000', 'a\u001cb', 'a\u0085b', 'a\ufeff', 'a']) {
      expect(re.test(JSON.stringify(text)), JSON.stringify(text)).toBe(false);
    }
    const other = compileWithEngine(jsonSchemaRegex({ type: 'string', pattern: '^[\\D][\\W]+$' }));
    expect(['a-', 'a -', '" !'].map((t) => other.test(JSON.stringify(t)))).toEqual([true, true, true]);
    // Python and Rust count "é" in \w and "٣" in \d: refused here, though JS takes them.
    expect(['1-', 'aé', '٣-', 'a_'].map((t) => other.test(JSON.stringify(t)))).toEqual([false, false, false, false]);
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '(?i)^abc$' })).toThrow(/an inline flag/);
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '(?=a)b' })).toThrow(/a lookaround or named group/);
  });

  it('reads a pattern\'s astral characters however written, and names a lone surrogate as what is wrong (review h142)', () => {
    for (const pattern of ['^\\ud83d\\ude00+$', '^\\u{1F600}+$', '^😀+$', '^[\\u{1F600}-\\u{1F64F}]+$', '^[😀-🙏]+$']) {
      const re = compileWithEngine(jsonSchemaRegex({ type: 'string', pattern }));
      expect(re.test(JSON.stringify("😀😀")), pattern).toBe(true);
      expect(re.test(JSON.stringify("a")), pattern).toBe(false);
    }
    // JavaScript's spelling without the u flag (a class of high surrogates, then one of low ones) was refused as a schema "too large".
    for (const pattern of ['^[\ud800-\udbff][\udc00-\udfff]$', '\ud800', '^\\udc00$', '^\\u{D800}$']) {
      expect(() => jsonSchemaRegex({ type: 'string', pattern }), pattern).toThrow(/a lone surrogate \(U\+D[8C]00\), which UTF-8 text never holds/);
    }
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '^\\u{110000}$' })).toThrow(/a malformed \\u\{\.\.\.\} escape/);
  });

  it("follows what zod writes: a format beside its pattern (the pattern, or the format beside zod's own lookahead spelling of it), records' propertyNames, tuples' additionalItems", () => {
    const follows = (schema: z.ZodType, valid: string[], invalid: string[]): void => {
      const written = z.toJSONSchema(schema, { target: 'draft-7' });
      const re = compile(jsonSchemaRegex(written));
      for (const text of valid) expect(re.test(text), `${text} under ${JSON.stringify(written)}`).toBe(true);
      for (const text of invalid) expect(re.test(text), `${text} under ${JSON.stringify(written)}`).toBe(false);
    };
    follows(z.object({ id: z.uuid() }), ['{"id":"123e4567-e89b-42d3-a456-426614174000"}'], ['{"id":"123e4567"}', '{"id":"not-a-uuid-at-all-no-not-one-1234"}']);
    follows(z.object({ at: z.iso.datetime() }), ['{"at":"2026-12-06T09:30:00Z"}'], ['{"at":"2026-12-06"}', '{"at":"yesterday"}']);
    follows(z.object({ on: z.iso.date() }), ['{"on":"2026-12-06"}'], ['{"on":"2026-13-06"}']);
    follows(z.object({ to: z.email() }), ['{"to":"max@example.com"}'], ['{"to":"max"}', '{"to":"@example.com"}']);
    follows(z.record(z.string(), z.number()), ['{}', '{"a":1,"b":2.5}'], ['{"a":"x"}', '[]']);
    follows(z.tuple([z.string(), z.number()]), ['["a",1]'], ['["a",1,2]', '["a"]', '[1,"a"]']);
    follows(z.tuple([z.string()], z.number()), ['["a"]', '["a",1,2,3]'], ['["a","b"]', '[]']);
    // z.url() is the format alone; z.hostname() and z.iso.duration() spell theirs with lookaheads, which this engine
    // does not read: beside its own format, zod's own pattern (held here to what the installed zod writes) is
    // followed as the format; the format tests check its texts with zod.
    follows(z.object({ home: z.url() }), ['{"home":"https://example.com/a?b=c"}'], ['{"home":"example.com"}', '{"home":"ftp://x"}']);
    follows(z.object({ host: z.hostname() }), ['{"host":"api.example.com"}'], ['{"host":"a b"}', '{"host":"-a.com"}']);
    follows(z.object({ every: z.iso.duration() }), ['{"every":"PT15M"}', '{"every":"P1Y2M3D"}'], ['{"every":"P"}', '{"every":"15 minutes"}']);
    // z.base64() (its contentEncoding, format and a pattern with an empty alternative anchored on its own) and
    // z.base64url(); z.mac()'s two anchored alternatives, read whole.
    follows(z.object({ b: z.base64() }), ['{"b":""}', '{"b":"aGk="}', '{"b":"aGVsbG8="}', '{"b":"YWJj"}'], ['{"b":"aGk"}', '{"b":"a==="}', '{"b":"a_b-"}']);
    follows(z.object({ b: z.base64url() }), ['{"b":"aGk"}', '{"b":"a_b-"}'], ['{"b":"aGk="}', '{"b":"a+b/"}', '{"b":"a"}']);
    follows(z.object({ m: z.mac() }), ['{"m":"00:1A:2B:3C:4D:5E"}', '{"m":"00:1a:2b:3c:4d:5e"}'], ['{"m":"00:1A:2b:3c:4d:5e"}', '{"m":"001A2B3C4D5E"}']);
    // A contentEncoding that is no base64, or beside another format: refused, naming it.
    expect(() => jsonSchemaRegex({ type: 'string', contentEncoding: 'quoted-printable' })).toThrow(/contentEncoding "quoted-printable" is not supported/);
    expect(() => jsonSchemaRegex({ type: 'string', contentEncoding: 'base64', format: 'uuid' })).toThrow(/beside the format/);
    expect(compile(jsonSchemaRegex({ contentEncoding: 'base64' })).test('"aGk="')).toBe(true);
    // A `$` or `^` inside an alternative, not at its ends, is still refused.
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '^a$b|c$' })).toThrow(SchemaError);
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '(^a)' })).toThrow(SchemaError);
    // The same lookahead beside another format, or a pattern of one's own with one: the pattern's 400 as before.
    expect(() => jsonSchemaRegex({ type: 'string', format: 'duration', pattern: '^(?=P)P1D$' })).toThrow(SchemaError);
    expect(() => jsonSchemaRegex({ type: 'string', format: 'uri', pattern: (z.toJSONSchema(z.hostname()) as { pattern: string }).pattern })).toThrow(SchemaError);
    // propertyNames that say more than "a string" are not followed: refused, not ignored.
    expect(() => jsonSchemaRegex({ type: 'object', propertyNames: { pattern: '^x' } })).toThrow(SchemaError);
    expect(() => jsonSchemaRegex({ type: 'object', propertyNames: { enum: ['a'] } })).toThrow(/propertyNames/);
  });

  it('resolves $defs and definitions, and cuts recursion that enters no container', () => {
    const schema = {
      definitions: { leaf: { type: 'integer' } },
      $defs: { loop: { anyOf: [{ $ref: '#/$defs/loop' }, { $ref: '#/definitions/leaf' }] } },
      type: 'array',
      items: { $ref: '#/$defs/loop' },
    };
    const re = compile(jsonSchemaRegex(schema));
    expect([re.test('[1,2]'), re.test('["a"]')]).toEqual([true, false]);
  });

  it("keeps a recursion's scalars at the depth bound, and cuts its containers there (3 nested containers, as the docs say)", () => {
    const listOrX = { anyOf: [{ type: 'array', items: { $ref: '#' } }, { const: 'x' }] };
    const re = compile(jsonSchemaRegex(listOrX));
    expect(['"x"', '["x"]', '[["x"]]', '[[["x"]]]', '[[[]]]', '[[["x","x"]],"x"]'].map((t) => re.test(t))).toEqual([true, true, true, true, true, true]);
    expect(['[[[[]]]]', '[[[["x"]]]]', '[[["y"]]]'].map((t) => re.test(t))).toEqual([false, false, false]);
    // A tree whose leaves are numbers: the leaves at the bound are kept.
    const tree = { $defs: { node: { anyOf: [{ type: 'integer' }, { type: 'object', properties: { kids: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['kids'] }] } }, $ref: '#/$defs/node' };
    const treeRe = compile(jsonSchemaRegex(tree, { maxDepth: 3 }));
    expect(treeRe.test('{"kids":[1,{"kids":[]}]}')).toBe(true);
    expect(treeRe.test('{"kids":[{"kids":[2]}]}')).toBe(true);
  });

  it('spells counts past 1000 in the subset', () => {
    const re = compile(jsonSchemaRegex({ type: 'string', minLength: 2500, maxLength: 3700 }));
    expect([2499, 2500, 3700, 3701].map((n) => re.test(`"${'a'.repeat(n)}"`))).toEqual([false, true, true, false]);
    expect(() => jsonStringPattern(jsonSchemaRegex({ type: 'array', minItems: 1500 }))).not.toThrow();
  });

  it('ignores annotations', () => {
    const annotated = { type: 'integer', title: 'n', description: 'a number', examples: [1], default: 0, $comment: 'x', deprecated: false };
    expect(jsonSchemaRegex(annotated)).toBe(jsonSchemaRegex({ type: 'integer' }));
  });
});

describe("jsonSchemaRegex: a string's length beside its pattern or format", () => {
  /** Whether the JSON text `text` is a string whose value fully matches `pattern` with `min` to `max` code points. */
  const valid = (text: string, pattern: RegExp, min: number, max: number): boolean => {
    const value = JSON.parse(text) as string;
    const n = [...value].length;
    return pattern.test(value) && n >= min && n <= max;
  };

  it("is exactly the intersection: the pattern's strings of min to max code points (min only, max only, both, length 0), escapes and astral characters one each", () => {
    const pattern = '^[a-z"\\\\\\n😀é]*$';
    const decoded = new RegExp(pattern, 'u');
    const bounds: [number | undefined, number | undefined][] = [[2, undefined], [undefined, 3], [1, 4], [0, 0], [3, 3]];
    const rng = seededRandom(92);
    const cases = Array.from({ length: 400 }, () => JSON.stringify(randomString(rng, 0, 6).replace(/[A-Z0-9 /{:\t\u0001中]/g, 'q')));
    for (const [min, max] of bounds) {
      const re = compileWithEngine(jsonSchemaRegex({ type: 'string', pattern, ...(min === undefined ? {} : { minLength: min }), ...(max === undefined ? {} : { maxLength: max }) }));
      let taken = 0;
      for (const text of cases) {
        const expected = valid(text, decoded, min ?? 0, max ?? Infinity);
        expect(re.test(text), `${text} in [${min}, ${max}]`).toBe(expected);
        if (expected) taken++;
      }
      expect(taken, `[${min}, ${max}]`).toBeGreaterThan(0);
    }
    // Escapes and a character past the BMP each count one: `\"`, `\\`, `\n` and 😀 make 4.
    const four = compileWithEngine(jsonSchemaRegex({ type: 'string', pattern, minLength: 4, maxLength: 4 }));
    expect(['"\\"\\\\\\n😀"', '"éé😀😀"', '""'].map((t) => four.test(t))).toEqual([true, true, false]);
    expect(['"éé😀"', '"abcde"'].map((t) => four.test(t))).toEqual([false, false]);
    // min above max: no string, as the lengths alone.
    expect(() => jsonSchemaRegex({ type: 'string', pattern, minLength: 3, maxLength: 2 })).toThrow(/no JSON value/);
  });

  it('follows what zod writes with a length beside its pattern or format (the zod schemas a length refused before)', () => {
    const follows = (schema: z.ZodType, good: string[], bad: string[]): void => {
      const written = z.toJSONSchema(schema, { target: 'draft-7' });
      const re = compileWithEngine(jsonSchemaRegex(written));
      for (const text of good) {
        expect(re.test(text), `${text} under ${JSON.stringify(written)}`).toBe(true);
        expect(schema.safeParse(JSON.parse(text)).success, text).toBe(true);
      }
      for (const text of bad) expect(re.test(text), `${text} under ${JSON.stringify(written)}`).toBe(false);
    };
    follows(z.string().min(1).regex(/^[a-z]+$/), ['"a"', '"max"'], ['""', '"Max"']);
    follows(z.email().max(20), ['"max@example.com"', '"a.b@example.co"'], [`"${'m'.repeat(9)}@example.com"`, '"max"']);
    follows(z.string().regex(/^\d+$/).length(6), ['"123456"'], ['"12345"', '"1234567"', '"12345a"']);
    follows(z.iso.datetime().max(20), ['"2026-12-06T09:30:00Z"'], ['"2026-12-06T09:30:00.5Z"', '"2026-12-06"']);
    follows(z.uuid().min(3), ['"123e4567-e89b-42d3-a456-426614174000"'], ['"123"']);
    follows(z.object({ code: z.string().min(2).max(4).regex(/^[A-Z]+$/) }), ['{"code":"AB"}', '{"code":"ABCD"}'], ['{"code":"A"}', '{"code":"ABCDE"}', '{"code":"ab"}']);
    // A format alone (no pattern beside it) takes a length too; where no string fits both, no value does (as min above max).
    const date = compileWithEngine(jsonSchemaRegex({ type: 'string', format: 'date', minLength: 10 }));
    expect(date.test('"2026-12-06"')).toBe(true);
    expect(() => jsonSchemaRegex({ type: 'string', format: 'date', maxLength: 9 })).toThrow(/no JSON value/);
    const optional = compileWithEngine(jsonSchemaRegex({ type: 'object', properties: { on: { type: 'string', format: 'date', maxLength: 9 } } }));
    expect([optional.test('{}'), optional.test('{"on":"2026-12-06"}')]).toEqual([true, false]);
  });

  it("bounds the length groups' automata by a pool's NFA states, one alone and all together, naming the length that passes it", () => {
    const refusal = (schema: unknown): SchemaError => refusalOf(() => jsonSchemaRegex(schema), SchemaError);
    // A repeated class costs about 3 states a code point: maxLength 5,000 fits, 100,000 does not.
    expect(() => jsonSchemaRegex({ type: 'string', pattern: '^[a-z]+$', maxLength: 5000 })).not.toThrow();
    expect(refusal({ type: 'string', pattern: '^[a-z]+$', maxLength: 100_000 })).toMatchObject({ path: '/maxLength', message: expect.stringContaining('more than 100000 automaton states') });
    // 40 of 3,000 states each: refused at the one that passes the bound, not after building them all.
    const many = { type: 'object', properties: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, { type: 'string', pattern: '^[a-z]+$', maxLength: 1000 + i }])) };
    expect(refusal(many)).toMatchObject({ path: expect.stringMatching(/^\/properties\/p3\d\/maxLength$/), message: expect.stringContaining("the schema's lengths beside patterns or formats need") });
    // A pattern's own states count where its length lets no text through (maxLength 0 before a large class: no
    // value, its group never written) or stops it at once: each is built all the same (review h95).
    const wide = (from: number) => Array.from({ length: 1500 }, (_, i) => String.fromCodePoint(from + 2 * i)).join('');
    const walls = { type: 'object', properties: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`w${i}`, { type: 'string', pattern: `^a[${wide(0x10000 + 3000 * i)}]$`, maxLength: 0 }])) };
    // What the engine refuses in the pattern (a lone surrogate in a class) is the pattern's 400, not a fault.
    expect(refusal({ type: 'string', pattern: '^a[\ud800]$', maxLength: 3 })).toMatchObject({ path: '/pattern', message: expect.stringContaining('lone surrogate') });
    expect(refusal(walls)).toMatchObject({ path: expect.stringMatching(/^\/properties\/w\d+\/maxLength$/), message: expect.stringContaining("the schema's lengths beside patterns or formats need") });
  });

  it('writes the length only where it says something, and leaves the regex as JS reads it there', () => {
    expect(jsonSchemaRegex({ type: 'string', pattern: '^a+$', minLength: 0 })).toBe(jsonSchemaRegex({ type: 'string', pattern: '^a+$' }));
    expect(jsonSchemaRegex({ type: 'string', pattern: '^a+$', maxLength: 3 })).toContain('(?json-length{0,3}:');
    // A length the format's texts all keep to says nothing (a uuid is 36); one that cuts some of them is written.
    expect(jsonSchemaRegex({ type: 'string', format: 'uuid', minLength: 36, maxLength: 36 })).toBe(jsonSchemaRegex({ type: 'string', format: 'uuid' }));
    expect(jsonSchemaRegex({ type: 'string', format: 'date-time', maxLength: 25 })).toContain('(?json-length{0,25}:');
  });
});

/** A random text of a regex's language: each class a code point of it, each repeat a count near its least. */
function randomText(node: ExpressionNode, rng: () => number): string {
  switch (node.kind) {
    case 'empty':
      return '';
    case 'chars': {
      const i = 2 * Math.floor(rng() * (node.set.length / 2));
      return String.fromCodePoint(between(rng, node.set[i], node.set[i + 1]));
    }
    case 'concat':
      return node.items.map((item) => randomText(item, rng)).join('');
    case 'alternation':
      return randomText(node.items[Math.floor(rng() * node.items.length)], rng);
    case 'repeat': {
      const count = between(rng, node.min, Math.min(node.max, node.min + (rng() < 0.1 ? 80 : 6)));
      return Array.from({ length: count }, () => randomText(node.item, rng)).join('');
    }
    case 'jsonLength':
    case 'anyTail':
      throw new Error('not in a format');
  }
}

describe('jsonSchemaRegex: string formats', () => {
  // Every text a format's regex takes is one that zod's own check (and Node's, for addresses) takes: the model is
  // held to a part of each format that the validators users parse with all agree on.
  const checks: Record<string, (text: string) => boolean> = {
    uri: (t) => z.url().safeParse(t).success && /^https?:$/.test(new URL(t).protocol),
    email: (t) => z.email().safeParse(t).success,
    hostname: (t) => z.hostname().safeParse(t).success && t.length <= 253,
    ipv4: (t) => isIPv4(t) && z.ipv4().safeParse(t).success,
    ipv6: (t) => isIPv6(t) && z.ipv6().safeParse(t).success,
    duration: (t) => z.iso.duration().safeParse(t).success,
    base64: (t) => z.base64().safeParse(t).success && Buffer.from(t, 'base64').length === (t.length / 4) * 3 - (t.match(/=*$/)?.[0].length ?? 0),
    // Whole quads: Pydantic's Base64UrlBytes wants padding where zod's z.base64url() refuses it.
    base64url: (t) => z.base64url().safeParse(t).success && t.length % 4 === 0 && Buffer.from(t, 'base64url').length === (t.length * 3) / 4,
  };
  for (const [format, valid] of Object.entries(checks)) {
    it(`writes ${format} as texts its validators take, 2,000 at random, and refuses what is none`, () => {
      const regex = jsonSchemaRegex({ type: 'string', format });
      const tree = parseRegex(regex.slice(1, -1));
      const rng = seededRandom(format.length * 104_729);
      const engine = compileWithEngine(regex);
      // JavaScript reads it too, as clients and the soak's checks do (`u` mode refuses `\-` outside a class).
      const js = compile(regex);
      for (let i = 0; i < 2000; i++) {
        const text = randomText(tree, rng);
        expect(valid(text), text).toBe(true);
        expect(engine.test(JSON.stringify(text)), text).toBe(true);
        expect(js.test(JSON.stringify(text)), text).toBe(true);
      }
      for (const wrong of ['', 'x', ' ', '::::', 'http//', '1.2.3', 'P', 'PT', 'a@b', 'http://a.1/', 'a.-b']) if (!valid(wrong)) expect(engine.test(JSON.stringify(wrong)), `${format}: ${wrong}`).toBe(false);
    });
  }

  it('takes the everyday texts of each format', () => {
    const takes = (format: string, text: string) => compileWithEngine(jsonSchemaRegex({ type: 'string', format })).test(JSON.stringify(text));
    for (const [format, text] of [
      ['uri', 'https://example.com/a/b?q=1&r=two#top'],
      ['uri', 'http://localhost:8080/'],
      ['email', 'jane.doe+tag@mail.example.org'],
      ['hostname', 'api.example.com'],
      ['ipv4', '192.168.0.1'],
      ['ipv6', '2001:db8::1'],
      ['ipv6', '::1'],
      ['duration', 'P1Y2M3DT4H5M6S'],
      ['duration', 'PT15M'],
      ['duration', 'P2W'],
    ]) expect(takes(format, text), `${format}: ${text}`).toBe(true);
    // Outside: an IPv4 octet past 255 or with a leading zero, a port past 65535, RFC 3339's out-of-order duration.
    // And what Pydantic refuses where zod takes it: email-validator's special-use domains and `--` labels, IDNA's
    // bad `xn--` labels, speedate's durations past u32 seconds.
    for (const [format, text] of [
      ['ipv4', '256.1.1.1'],
      ['ipv4', '01.1.1.1'],
      ['uri', 'http://a.com:65536/'],
      ['uri', 'http://xn--a.com/'],
      ['duration', 'P1D1Y'],
      ['duration', 'PT9999999S'],
      ['email', 'a..b@c.com'],
      ['email', 'admin@server.local'],
      ['email', 'alice@example.test'],
      ['email', 'x@ab--cd.com'],
    ]) {
      expect(takes(format, text), `${format}: ${text}`).toBe(false);
    }
  });

  it("takes Pydantic's HttpUrl (a URI of 1 to 2,083 characters) as the URI alone: the length says nothing its texts do not keep to", () => {
    const url = jsonSchemaRegex({ type: 'string', format: 'uri', minLength: 1, maxLength: 2083 });
    expect(url).toBe(jsonSchemaRegex({ type: 'string', format: 'uri' }));
    expect(textLengthBounds(parseRegex(url.slice(1, -1))).max).toBeLessThanOrEqual(2083);
    // A length that cuts some of them is followed; one none of them keeps to is no value.
    expect(jsonSchemaRegex({ type: 'string', format: 'email', maxLength: 40 })).toContain('(?json-length{0,40}:');
    expect(() => jsonSchemaRegex({ type: 'string', format: 'ipv4', maxLength: 6 })).toThrow(/no JSON value/);
  });
});

describe('jsonSchemaRegex on schemas built to blow up', () => {
  /** The SchemaError `schema` is refused with, and the milliseconds it took. */
  // Any error, not only a SchemaError: the tests check its class, that a stack overflow is never what refuses.
  const refusal = (schema: unknown): [SchemaError, number] => {
    const t0 = performance.now();
    const e = refusalOf(() => jsonSchemaRegex(schema), Error);
    return [e as SchemaError, performance.now() - t0];
  };
  const nested = (depth: number, wrap: (inner: unknown) => unknown): unknown => {
    let s: unknown = { type: 'integer' };
    for (let i = 0; i < depth; i++) s = wrap(s);
    return s;
  };

  it('refuses $refs that multiply, quickly and with a SchemaError at the root', () => {
    const $defs: Record<string, unknown> = { L0: { type: 'integer' } };
    for (let k = 1; k <= 9; k++) $defs[`L${k}`] = { type: 'array', prefixItems: Array.from({ length: 10 }, () => ({ $ref: `#/$defs/L${k - 1}` })) };
    const properties = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, { $ref: '#' }]));
    for (const schema of [{ $defs, $ref: '#/$defs/L9' }, { type: 'object', properties }]) {
      const [e, ms] = refusal(schema);
      expect(e).toBeInstanceOf(SchemaError);
      expect(e.path).toBe('');
      expect(e.message).toMatch(/grows past 262144 characters|too large to follow/);
      // ~20-60 ms alone; 358 ms once with other jobs on the 2 cores. Unbounded, these ran for minutes.
      expect(ms).toBeLessThan(1000);
    }
    // A reference used many times without recursion is written, and costs, once a depth.
    expect(jsonSchemaRegex({ $defs, $ref: '#/$defs/L2' })).toBe(jsonSchemaRegex({ $defs, $ref: '#/$defs/L2' }));
    expect(compile(jsonSchemaRegex({ $defs, $ref: '#/$defs/L2' })).test(`[${Array(10).fill(`[${Array(10).fill(7).join(',')}]`).join(',')}]`)).toBe(true);
  });

  it('does not double nested objects of optional properties a level', () => {
    const schema = nested(24, (inner) => ({ type: 'object', properties: { a: { type: 'integer' }, b: inner } }));
    const re = compile(jsonSchemaRegex(schema));
    expect(re.test('{"a":1,"b":{"b":{"a":2}}}')).toBe(true);
    expect(re.test('{"b":{"a":1},"a":1}')).toBe(false);
    // The longest member written once, in the middle: every subset in order, and no other.
    const big = { type: 'object', properties: { x: { type: 'string', format: 'date-time' }, y: { type: 'string', format: 'uuid' } }, required: ['x', 'y'] };
    const mid = compile(jsonSchemaRegex({ type: 'object', properties: { a: { type: 'integer' }, b: big, c: { type: 'boolean' } } }));
    const members = ['"a":1', '"b":{"x":"2024-01-02T03:04:05Z","y":"01234567-89ab-cdef-0123-456789abcdef"}', '"c":true'];
    for (let mask = 0; mask < 8; mask++) {
      const chosen = members.filter((_, i) => mask & (1 << i));
      expect(mid.test(`{${chosen.join(',')}}`), chosen.join(',')).toBe(true);
      if (chosen.length > 1) expect(mid.test(`{${[...chosen].reverse().join(',')}}`)).toBe(false);
      expect(mid.test(`{${chosen.join(',')},}`)).toBe(false);
    }
    // Where the regex would still grow too long, a SchemaError, never a RangeError.
    const wide = nested(24, (inner) => ({ type: 'object', properties: { a: inner, b: inner } }));
    expect(refusal(wide)[0]).toBeInstanceOf(SchemaError);
  });

  it('refuses nesting past the bound at the path where it passes it', () => {
    const [objects] = refusal(nested(1200, (inner) => ({ type: 'object', properties: { a: inner } })));
    expect(objects).toBeInstanceOf(SchemaError);
    expect(objects.path).toBe(`${'/properties/a'.repeat(128)}`);
    const [anyOf] = refusal(nested(3000, (inner) => ({ anyOf: [inner] })));
    expect(anyOf).toBeInstanceOf(SchemaError);
    expect(anyOf.path).toBe('/anyOf/0'.repeat(128));
    expect(() => jsonSchemaRegex(nested(100, (inner) => ({ anyOf: [inner] })))).not.toThrow();
    // Nor do a pattern's groups or a const's value overflow the stack.
    const [pattern] = refusal({ type: 'string', pattern: `${'('.repeat(20_000)}a${')'.repeat(20_000)}` });
    expect(pattern).toBeInstanceOf(SchemaError);
    expect(pattern.path).toBe('/pattern');
    const [deepConst] = refusal({ properties: { c: { const: JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`) } } });
    expect(deepConst).toBeInstanceOf(SchemaError);
    expect(deepConst.path).toBe('/properties/c');
  });
});

describe('integerRangeRegex', () => {
  it('matches exactly the integers in range, for every integer in [-300, 300] and random bounds', () => {
    const rng = seededRandom(11);
    const probes = [...Array.from({ length: 601 }, (_, i) => i - 300), 999, 1000, 12345, -999, -1000, -12345];
    for (let k = 0; k < 300; k++) {
      let lo = between(rng, -300, 300);
      let hi = between(rng, lo, 300);
      if (k % 10 === 1) lo = -Infinity;
      if (k % 10 === 2) hi = Infinity;
      const re = compile(integerRangeRegex(lo, hi)!);
      const wrong = probes.filter((n) => re.test(String(n)) !== (n >= lo && n <= hi));
      expect(wrong, `[${lo}, ${hi}]`).toEqual([]);
      expect(re.test('-0') || re.test('00') || re.test('01')).toBe(false);
    }
    expect(integerRangeRegex(3, 2)).toBeNull();
  });

  it('holds integer schema bounds exactly, exclusive ones and fractional ones included', () => {
    const re = compile(jsonSchemaRegex({ type: 'integer', exclusiveMinimum: -7.5, exclusiveMaximum: 12 }));
    for (let n = -30; n <= 30; n++) expect(re.test(String(n)), String(n)).toBe(n >= -7 && n <= 11);
  });
});

describe('numberRangeRegex', () => {
  it('matches exactly the decimals between integer bounds, inclusive or exclusive, and no exponent where bounded away from 0', () => {
    const texts = Array.from({ length: 57 }, (_, k) => (k - 28) / 4).flatMap((v) => [String(v), v.toFixed(2), v.toFixed(0)]).filter((t) => t !== '-0');
    const rng = seededRandom(17);
    for (let k = 0; k < 200; k++) {
      const lo = k % 7 === 1 ? null : { value: between(rng, -6, 6), exclusive: rng() < 0.5 };
      const hi = k % 7 === 2 || lo === null ? (k % 7 === 1 ? { value: between(rng, -6, 6), exclusive: rng() < 0.5 } : null) : { value: between(rng, lo.value, 6), exclusive: rng() < 0.5 };
      const schema = { type: 'number', ...(lo && { [lo.exclusive ? 'exclusiveMinimum' : 'minimum']: lo.value }), ...(hi && { [hi.exclusive ? 'exclusiveMaximum' : 'maximum']: hi.value }) };
      const inRange = (v: number) => (lo === null || (lo.exclusive ? v > lo.value : v >= lo.value)) && (hi === null || (hi.exclusive ? v < hi.value : v <= hi.value));
      let re: RegExp;
      try {
        re = compile(jsonSchemaRegex(schema));
      } catch (e) {
        // An empty range is refused as a schema admitting nothing.
        expect(e, JSON.stringify(schema)).toBeInstanceOf(SchemaError);
        expect(texts.some((t) => inRange(Number(t))), JSON.stringify(schema)).toBe(false);
        continue;
      }
      const wrong = texts.filter((t) => re.test(t) !== inRange(Number(t)));
      expect(wrong, JSON.stringify(schema)).toEqual([]);
      expect(re.test('-0'), JSON.stringify(schema)).toBe(false);
    }
  });

  it('writes nothing beside an exclusive bound that a double reads as the bound itself', () => {
    const cases: Array<[Record<string, number>, string[], string[]]> = [
      [{ exclusiveMinimum: 1 }, ['1.5', '1.00000000000001', '2'], ['1.0000000000000001', '1.00000000000000001', '1']],
      [{ exclusiveMaximum: 10 }, ['9.5', '9.999999999999', '9'], ['9.99999999999999999', '9.999999999999999', '10']],
      [{ exclusiveMinimum: 0, exclusiveMaximum: 1 }, ['0.5', '0.50', '0.99999999999999', '0.05'], ['0.99999999999999999', '0', '1']],
      [{ exclusiveMinimum: -1, exclusiveMaximum: 3 }, ['-0.5', '2.5', '0'], ['-0.99999999999999999', '2.99999999999999999']],
    ];
    for (const [bounds, taken, refused] of cases) {
      const re = compile(jsonSchemaRegex({ type: 'number', ...bounds }));
      for (const t of taken) expect(re.test(t), `${JSON.stringify(bounds)} ${t}`).toBe(true);
      for (const t of refused) expect(re.test(t), `${JSON.stringify(bounds)} ${t}`).toBe(false);
    }
  });

  it('keeps the exponent where a bound at 0 alone settles the sign', () => {
    const positive = compile(jsonSchemaRegex({ type: 'number', exclusiveMinimum: 0 }));
    expect(['1e-7', '0.5E3', '3'].every((t) => positive.test(t))).toBe(true);
    expect(['0', '0.0e5', '-1e3', '0e1'].some((t) => positive.test(t))).toBe(false);
    // Nothing that a double reads as 0.
    for (const schema of [{ type: 'number', exclusiveMinimum: 0 }, { type: 'number', exclusiveMinimum: 0, maximum: 5 }]) {
      const re = compile(jsonSchemaRegex(schema));
      for (const t of ['1e-400', `0.${'0'.repeat(400)}1`, '0.1e-330']) if (re.test(t)) expect(JSON.parse(t), t).toBeGreaterThan(0);
      expect(re.test('0.001')).toBe(true);
    }
    expect(compile(jsonSchemaRegex({ type: 'number', exclusiveMinimum: 0 })).test('1e-99')).toBe(true);
    const negative = compile(jsonSchemaRegex({ type: 'number', exclusiveMaximum: 0 }));
    expect(negative.test('-1e-400')).toBe(false);
    const nonPositive = compile(jsonSchemaRegex({ type: 'number', maximum: 0 }));
    expect(['-1e-7', '0', '0.0', '-2.5E+3'].every((t) => nonPositive.test(t))).toBe(true);
    expect(['1e-7', '0.1'].some((t) => nonPositive.test(t))).toBe(false);
  });
});

describe('jsonObjectRegex', () => {
  it('matches any JSON object within the depth bound, and nothing else', () => {
    const rng = seededRandom(3);
    const re = compile(jsonObjectRegex({ maxDepth: 3 }));
    for (let i = 0; i < 200; i++) {
      const v = randomValue(rng, 3);
      const text = layout(v, rng);
      expect(re.test(text), text).toBe(typeof v === 'object' && v !== null && !Array.isArray(v));
      for (const m of mutations(text, rng, 8)) if (re.test(m)) expect(() => JSON.parse(m), m).not.toThrow();
    }
    expect(re.test('{"a":[{"b":1}]}')).toBe(true);
    expect(re.test('{"a":[{"b":[1]}]}')).toBe(false);
  });

  it('stays small enough to expand: 4x per level', () => {
    const sizes = [2, 3, 4, 5, 6].map((d) => jsonObjectRegex({ maxDepth: d, maxLength: 10_000_000 }).length);
    expect(sizes[1]).toBeLessThan(10_000);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i] / sizes[i - 1]).toBeLessThan(4.2);
    // Past the length a pool takes, refused as the schema's fault, never built.
    expect(() => jsonObjectRegex({ maxDepth: 12 })).toThrow(SchemaError);
  });
});

describe('jsonSchemaRegex: oneOf, $ref pointers, bounds and integer formats (review h136)', () => {
  const refusedAt = (schema: unknown): { path: string; message: string } => {
    const { path, message } = refusalOf(() => jsonSchemaRegex(schema), SchemaError);
    return { path, message };
  };

  it('refuses a oneOf whose branches may both match a value, naming it and saying to send anyOf', () => {
    // -5 is an integer and a number: valid under both branches, so under neither by "exactly one".
    const overlapping = { type: 'object', properties: { v: { oneOf: [{ type: 'integer' }, { type: 'number' }] } }, required: ['v'] };
    expect(refusedAt(overlapping)).toMatchObject({ path: '/properties/v/oneOf', message: expect.stringContaining('anyOf') });
    for (const schema of [
      { oneOf: [{ type: 'string' }, { type: 'string', maxLength: 3 }] },
      { oneOf: [{ enum: ['a', 'b'] }, { const: 'b' }] },
      { oneOf: [{ const: 'a' }, { type: 'string' }] },
      { oneOf: [{ type: 'object', properties: { k: { const: 'a' } } }, { type: 'object', properties: { k: { const: 'b' } } }] },
      { oneOf: [{}, { type: 'null' }] },
    ]) {
      expect(refusedAt(schema).path, JSON.stringify(schema)).toBe('/oneOf');
    }
    // The same as anyOf is followed.
    expect(compile(jsonSchemaRegex({ anyOf: [{ type: 'integer' }, { type: 'number' }] })).test('-5')).toBe(true);
  });

  it("follows a oneOf whose branches cannot overlap: types, values, zod's and Pydantic's discriminated unions", () => {
    const typed = compile(jsonSchemaRegex({ oneOf: [{ type: 'string' }, { type: 'integer' }, { type: 'null' }, { const: 1.5 }] }));
    for (const text of ['"a"', '3', 'null', '1.5']) expect(typed.test(text), text).toBe(true);
    expect(typed.test('2.5')).toBe(false);
    expect(compile(jsonSchemaRegex({ oneOf: [{ enum: ['a', 'b'] }, { enum: ['c', 1] }, { type: 'boolean' }] })).test('"c"')).toBe(true);
    const zodSchemas = [
      z.discriminatedUnion('kind', [z.object({ kind: z.literal('a'), x: z.string() }), z.object({ kind: z.literal('b'), y: z.number() })]),
      z.discriminatedUnion('kind', [z.object({ kind: z.enum(['a', 'c']), x: z.string() }), z.object({ kind: z.literal('b') })]),
      z.xor([z.string(), z.number()]),
      // Closed objects that each require what the other may not hold, and a union within a union told apart by its
      // tag (review h138: both were 400s, though no value matches two branches).
      z.xor([z.object({ a: z.string() }).strict(), z.object({ b: z.string() }).strict()]),
      z.discriminatedUnion('type', [
        z.object({ type: z.literal('a'), x: z.string() }),
        z.discriminatedUnion('sub', [z.object({ type: z.literal('b'), sub: z.literal('1') }), z.object({ type: z.literal('b'), sub: z.literal('2') })]),
      ]),
    ];
    for (const schema of zodSchemas) expect(() => jsonSchemaRegex(z.toJSONSchema(schema)), JSON.stringify(z.toJSONSchema(schema))).not.toThrow();
    const xor = compile(jsonSchemaRegex(z.toJSONSchema(zodSchemas[3])));
    for (const [text, valid] of [['{"a":"s"}', true], ['{"b":"s"}', true], ['{"a":"s","b":"t"}', false], ['{}', false]] as const) expect(xor.test(text), text).toBe(valid);
    const nested = compile(jsonSchemaRegex(z.toJSONSchema(zodSchemas[4])));
    expect(nested.test('{"type":"b","sub":"2"}')).toBe(true);
    expect(nested.test('{"type":"a","sub":"2"}')).toBe(false);
    // Open objects, or one closed that may hold what the other requires: a value may match both.
    expect(refusedAt({ oneOf: [{ type: 'object', properties: { a: {} }, required: ['a'] }, { type: 'object', properties: { b: {} }, required: ['b'] }] }).path).toBe('/oneOf');
    expect(refusedAt({ oneOf: [{ type: 'object', properties: { a: {}, b: {} }, required: ['a'], additionalProperties: false }, { type: 'object', properties: { b: {} }, required: ['b'] }] }).path).toBe('/oneOf');
    // A union branch is apart only where each of its own branches is.
    expect(refusedAt({ oneOf: [{ const: 1 }, { anyOf: [{ const: 2 }, { type: 'integer' }] }] }).path).toBe('/oneOf');
    const zodPets = compile(jsonSchemaRegex(z.toJSONSchema(zodSchemas[0])));
    expect(zodPets.test('{"kind":"a","x":"s"}')).toBe(true);
    expect(zodPets.test('{"kind":"a","y":1}')).toBe(false);
    // Pydantic 2.13's model_json_schema() of `pet: Union[Cat, Dog] = Field(discriminator='pet_type')`: its branches
    // $refs, its discriminator OpenAPI's keyword beside them.
    const pydantic = {
      $defs: {
        Cat: { properties: { pet_type: { const: 'cat', title: 'Pet Type', type: 'string' }, meows: { title: 'Meows', type: 'integer' } }, required: ['pet_type', 'meows'], title: 'Cat', type: 'object' },
        Dog: { properties: { pet_type: { enum: ['dog', 'hound'], title: 'Pet Type', type: 'string' }, barks: { title: 'Barks', type: 'number' } }, required: ['pet_type', 'barks'], title: 'Dog', type: 'object' },
      },
      properties: { pet: { discriminator: { mapping: { cat: '#/$defs/Cat', dog: '#/$defs/Dog', hound: '#/$defs/Dog' }, propertyName: 'pet_type' }, oneOf: [{ $ref: '#/$defs/Cat' }, { $ref: '#/$defs/Dog' }], title: 'Pet' } },
      required: ['pet'],
      title: 'Model',
      type: 'object',
    };
    const pets = compile(jsonSchemaRegex(pydantic));
    expect(pets.test('{"pet":{"pet_type":"hound","barks":1.5}}')).toBe(true);
    expect(pets.test('{"pet":{"pet_type":"cat","barks":1.5}}')).toBe(false);
    // Tagged by a property one branch's objects may leave out: not apart.
    const loose = structuredClone(pydantic);
    loose.$defs.Dog.required = ['barks'];
    expect(refusedAt(loose).path).toBe('/properties/pet/oneOf');
    // A recursion through oneOf is read within a bounded budget, never for ever.
    expect(refusedAt({ oneOf: [{ $ref: '#' }, { $ref: '#' }] }).path).toBe('/oneOf');
  });

  it('reads $ref as a URI fragment: percent-decoded, ~0 and ~1 unescaped, own definitions only', () => {
    const defs = { 'sp ace': { const: 1 }, 'a/b': { const: 2 }, 'c~d': { const: 3 } };
    for (const [ref, text] of [['#/$defs/sp%20ace', '1'], ['#/$defs/a~1b', '2'], ['#/$defs/c~0d', '3'], ['#/%24defs/a~1b', '2']]) {
      expect(compile(jsonSchemaRegex({ $defs: defs, $ref: ref })).test(text), ref).toBe(true);
    }
    // No member of that name: an inherited one (Object.prototype's) is none.
    expect(refusedAt({ $defs: {}, $ref: '#/$defs/constructor' }).message).toContain('names no schema');
    expect(refusedAt({ $defs: {}, $ref: '#/$defs/toString' }).message).toContain('names no schema');
    expect(refusedAt({ $defs: defs, $ref: '#/$defs/sp%2' }).message).toContain('not a valid URI fragment');
    // A decoded `/` is a pointer's separator (RFC 6901, section 6): a/b is two steps, not the name.
    expect(refusedAt({ $defs: defs, $ref: '#/$defs/a%2Fb' }).message).toContain('references are supported');
  });

  it('says why a number bound is refused: a fraction, or an integer past 2^53', () => {
    expect(refusedAt({ type: 'number', maximum: 0.5 }).message).toContain('only as an integer');
    const past = refusedAt({ type: 'number', maximum: 1e20 });
    expect(past).toMatchObject({ path: '/maximum', message: expect.stringContaining('2^53') });
    expect(past.message).not.toContain('only as an integer');
  });

  it('follows OpenAPI\'s and schemars\' integer formats as bounds (64-bit ones within 2^53), and reads past others', () => {
    const int32 = compile(jsonSchemaRegex({ type: 'integer', format: 'int32' }));
    for (const text of ['-2147483648', '2147483647', '0']) expect(int32.test(text), text).toBe(true);
    for (const text of ['2147483648', '-2147483649', '99999999999']) expect(int32.test(text), text).toBe(false);
    const bounded = compile(jsonSchemaRegex({ type: 'integer', format: 'int32', minimum: 0 }));
    expect(bounded.test('-1')).toBe(false);
    expect(bounded.test('2147483647')).toBe(true);
    const int64 = compile(jsonSchemaRegex({ type: 'integer', format: 'int64' }));
    expect(int64.test('9007199254740991')).toBe(true);
    expect(int64.test('99999999999999999999')).toBe(false);
    // Rust's schemars writes uint8 .. uint64 and int8, int16 (review h139: a 400 broke schemas that had compiled).
    const byte = compile(jsonSchemaRegex({ type: 'integer', format: 'uint8' }));
    for (const [text, valid] of [['0', true], ['255', true], ['256', false], ['-1', false]] as const) expect(byte.test(text), text).toBe(valid);
    expect(compile(jsonSchemaRegex({ type: 'integer', format: 'uint32' })).test('4294967295')).toBe(true);
    expect(compile(jsonSchemaRegex({ type: 'integer', format: 'int16' })).test('-32769')).toBe(false);
    // A format of no known bounds is read past.
    expect(compile(jsonSchemaRegex({ type: 'integer', format: 'my-id' })).test('123456789012')).toBe(true);
    // A string's format beside it is that string's.
    expect(compile(jsonSchemaRegex({ type: ['integer', 'string'], format: 'date' })).test('"2024-01-02"')).toBe(true);
  });
});
