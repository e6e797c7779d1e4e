/**
 * JSON schema cases with instance generators and the layout's texts, shared
 * by the schema's regex tests and its grammar's (which must agree on them).
 */

import { compileRegex } from '../../shared/structured/regex-automaton';

export type Rng = () => number;
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json } | Verbatim;
/** A const or enum value: the regex holds it as JSON.stringify writes it, without the layout's whitespace. */
export class Verbatim {
  constructor(readonly value: unknown) {}
}
export type S = Record<string, unknown>;

export const compile = (r: string) => new RegExp(`^(?:${r})$`, 'u');
const utf8 = new TextEncoder();
/** As `compile`, through this server's own engine (regex-automaton.ts): what reads what JS cannot, `(?json-length...)`. */
export const compileWithEngine = (r: string): { test(text: string): boolean } => {
  const automaton = compileRegex(r);
  return {
    test: (text) => {
      const bytes = utf8.encode(text);
      return automaton.accepting(automaton.follow(0, bytes, 0, bytes.length));
    },
  };
};
export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
export const between = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

// Characters a string may hold: ones JSON writes raw, ones it escapes, and
// one past the BMP (a single code point, two UTF-16 units).
export const CHARS = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u0001', 'é', '中', '😀', '{', ':'];
export const randomString = (rng: Rng, min = 0, max = min + 6) => Array.from({ length: between(rng, min, max) }, () => pick(rng, CHARS)).join('');
export const pad = (n: number) => String(n).padStart(2, '0');

export const FORMAT_SAMPLES: Record<string, (rng: Rng) => string> = {
  date: (rng) => `${between(rng, 1000, 2999)}-${pad(between(rng, 1, 12))}-${pad(between(rng, 1, 28))}`,
  time: (rng) => `${pad(between(rng, 0, 23))}:${pad(between(rng, 0, 59))}:${pad(between(rng, 0, 59))}${pick(rng, ['', '.5', '.123'])}${pick(rng, ['Z', '+05:30', '-11:00'])}`,
  'date-time': (rng) => `${FORMAT_SAMPLES.date(rng)}T${FORMAT_SAMPLES.time(rng)}`,
  uuid: (rng) => [8, 4, 4, 4, 12].map((n) => Array.from({ length: n }, () => pick(rng, [...'0123456789abcdefABCDEF'])).join('')).join('-'),
};

/** Any JSON value with containers nested at most `depth` deep. */
export function randomValue(rng: Rng, depth: number): Json {
  const kind = between(rng, 0, depth > 0 ? 6 : 4);
  switch (kind) {
    case 0: return randomString(rng);
    case 1: return pick(rng, [0, -3, 17, 2.5, -0.125, 1e21, 123456789]);
    case 2: return rng() < 0.5;
    case 3: return null;
    case 4: return between(rng, -50, 50);
    case 5: return Array.from({ length: between(rng, 0, 3) }, () => randomValue(rng, depth - 1));
    default: return Object.fromEntries(Array.from({ length: between(rng, 0, 3) }, () => [randomString(rng, 0, 3), randomValue(rng, depth - 1)]));
  }
}

/** A random instance of `schema` (the keywords the cases below use); `root` resolves $ref. */
export function instance(schema: unknown, root: S, rng: Rng, depth: number): Json {
  if (schema === true || (typeof schema === 'object' && schema !== null && Object.keys(schema).length === 0)) return randomValue(rng, Math.max(0, depth));
  const s = schema as S;
  if ('$ref' in s) {
    const name = String(s.$ref).split('/').pop()!;
    return instance((root.$defs as S)[name], root, rng, depth);
  }
  if ('const' in s) return new Verbatim(s.const);
  if ('enum' in s) return new Verbatim(pick(rng, s.enum as unknown[]));
  if ('anyOf' in s) return instance(pick(rng, s.anyOf as unknown[]), root, rng, depth);
  const type = Array.isArray(s.type) ? pick(rng, s.type as string[]) : (s.type as string);
  switch (type) {
    case 'null': return null;
    case 'boolean': return rng() < 0.5;
    case 'integer': {
      const lo = (s.minimum as number | undefined) ?? ((s.exclusiveMinimum as number | undefined) ?? -1001) + 1;
      const hi = (s.maximum as number | undefined) ?? ((s.exclusiveMaximum as number | undefined) ?? 1001) - 1;
      return between(rng, lo, hi);
    }
    case 'number': {
      const v = pick(rng, [0, 1.5, 3e-7, 42, 1e21, 0.001]);
      return s.minimum === 0 || rng() < 0.5 ? v : -v;
    }
    case 'string': {
      if (typeof s.format === 'string') return FORMAT_SAMPLES[s.format](rng);
      const min = (s.minLength as number | undefined) ?? 0;
      return randomString(rng, min, (s.maxLength as number | undefined) ?? min + 6);
    }
    case 'array': {
      const prefix = (s.prefixItems as unknown[] | undefined) ?? [];
      const max = Math.min((s.maxItems as number | undefined) ?? Infinity, prefix.length + 3);
      const min = (s.minItems as number | undefined) ?? 0;
      // Past the depth a recursive schema is cut at, arrays stay as short as allowed.
      const n = depth <= 0 ? min : between(rng, min, max);
      return Array.from({ length: n }, (_, i) => instance(i < prefix.length ? prefix[i] : s.items ?? true, root, rng, depth - 1));
    }
    default: {
      const props = (s.properties as Record<string, unknown> | undefined) ?? {};
      const required = (s.required as string[] | undefined) ?? [];
      if (Object.keys(props).length === 0) {
        return Object.fromEntries(Array.from({ length: between(rng, 0, 3) }, () => [randomString(rng, 0, 3), instance(s.additionalProperties ?? true, root, rng, depth - 1)]));
      }
      const out: Record<string, Json> = {};
      for (const [k, v] of Object.entries(props)) if (required.includes(k) || rng() < 0.5) out[k] = instance(v, root, rng, depth - 1);
      return out;
    }
  }
}

/** `value` in outlines' layout, each whitespace slot (after `{`/`[`, around `:` and `,`, before `}`/`]`) a space or nothing at random. */
export function layout(value: Json, rng: Rng): string {
  const ws = () => (rng() < 0.5 ? ' ' : '');
  if (value instanceof Verbatim) return JSON.stringify(value.value);
  if (Array.isArray(value)) return value.length === 0 ? `[${ws()}]` : `[${ws()}${value.map((v) => layout(v, rng)).join(`${ws()},${ws()}`)}${ws()}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0) return `{${ws()}}`;
    return `{${ws()}${entries.map(([k, v]) => `${JSON.stringify(k)}${ws()}:${ws()}${layout(v, rng)}`).join(`${ws()},${ws()}`)}${ws()}}`;
  }
  return JSON.stringify(value);
}

/** Text edits of a valid text: whatever of them the regex takes must still be JSON. */
export function mutations(text: string, rng: Rng, n: number): string[] {
  const out: string[] = [];
  const chars = [...'{}[],:"\\ 0-1e.tnx'];
  for (let i = 0; i < n; i++) {
    const at = between(rng, 0, text.length);
    const op = between(rng, 0, 2);
    if (op === 0) out.push(text.slice(0, at) + text.slice(at + 1));
    else if (op === 1) out.push(text.slice(0, at) + pick(rng, chars) + text.slice(at));
    else out.push(text.slice(0, at) + pick(rng, chars) + text.slice(at + 1));
  }
  return out;
}

export interface Case {
  name: string;
  schema: S;
  depth?: number;
  invalid: string[];
}

export const CASES: Case[] = [
  {
    name: 'a flat object',
    schema: {
      type: 'object',
      properties: {
        name: { type: 'string' },
        age: { type: 'integer', minimum: 0, maximum: 150 },
        score: { type: 'number' },
        active: { type: 'boolean' },
        note: { type: ['string', 'null'] },
      },
      required: ['name', 'age'],
      additionalProperties: false,
    },
    invalid: [
      '{"age":3}', '{"name":"x"}', '{"name":"x","age":-1}', '{"name":"x","age":151}', '{"name":"x","age":"3"}',
      '{"name":"x","age":3,"extra":1}', '{"name":"x","age":3,}', '{"name":3,"age":3}', '{"name":"x","age":3,"active":"yes"}',
      '{"name":"x","age":3.5}', '{"name":"x","age":3,"note":1}', '{"name":"x"  ,"age":3}', '{ "name":"x","age":3 ,"score":1e}',
    ],
  },
  {
    name: 'a nested object with a bounded array',
    schema: {
      type: 'object',
      properties: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string', minLength: 1 } }, required: ['street', 'city'] },
        tags: { type: 'array', items: { type: 'string', maxLength: 3 }, minItems: 1, maxItems: 3 },
      },
      required: ['address', 'tags'],
    },
    invalid: [
      '{"address":{"street":"a","city":"b"},"tags":[]}', '{"address":{"street":"a","city":"b"},"tags":["a","b","c","d"]}',
      '{"address":{"street":"a","city":""},"tags":["a"]}', '{"address":{"street":"a"},"tags":["a"]}',
      '{"address":{"street":"a","city":"b"},"tags":["abcd"]}', '{"address":{"street":"a","city":"b"},"tags":[1]}',
      '{"address":{"street":"a","city":"b"},"tags":["a",]}', '{"tags":["a"],"address":{"street":"a","city":"b"}}',
    ],
  },
  {
    name: 'arrays with prefixItems, min and max items',
    schema: { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], items: { type: 'boolean' }, minItems: 1, maxItems: 4 },
    invalid: ['[]', '["a"]', '[1,2]', '[1,"a",true,false,true]', '[1,"a",null]', '[1,,"a"]', '[,1]'],
  },
  {
    name: 'an enum of mixed types',
    schema: { enum: ['a', 1, null, true, { k: [1, 2] }, [1, 'x'], 2.5, 'quo"te\\', 'a.b*'] },
    invalid: ['"b"', '3', 'false', '{"k":[1]}', '[1]', '"quo"te"', '"aXb*"', '"a.bbb"', '2.50'],
  },
  {
    name: 'a recursive $defs tree',
    schema: {
      $defs: { node: { type: 'object', properties: { value: { type: 'integer' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['value'] } },
      $ref: '#/$defs/node',
    },
    depth: 2,
    invalid: ['{}', '{"children":[]}', '{"value":1,"children":[{}]}', '{"value":1,"children":[{"value":2,"children":[{"value":3}]}]}'],
  },
  {
    name: 'integer bounds, negative and exclusive',
    schema: { type: 'integer', exclusiveMinimum: -20, maximum: 35 },
    invalid: ['-20', '-21', '36', '100', '-0', '007', '1.0', '"5"'],
  },
  {
    name: 'string lengths in code points',
    schema: { type: 'string', minLength: 2, maxLength: 4 },
    invalid: ['""', '"a"', '"\\n"', '"abcde"', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\"\\"\\"\\"\\""', '"😀"', 'ab'],
  },
  {
    name: 'formats',
    schema: {
      type: 'object',
      properties: { at: { type: 'string', format: 'date-time' }, day: { type: 'string', format: 'date' }, t: { type: 'string', format: 'time' }, id: { type: 'string', format: 'uuid' } },
      required: ['at', 'day', 't', 'id'],
    },
    invalid: [
      '{"at":"2024-01-01T00:00:00","day":"2024-01-01","t":"10:00:00Z","id":"01234567-89ab-cdef-0123-456789abcdef"}',
      '{"at":"2024-01-01T00:00:00Z","day":"2024-02-30","t":"10:00:00Z","id":"01234567-89ab-cdef-0123-456789abcdef"}',
      '{"at":"2024-01-01T00:00:00Z","day":"2024-13-01","t":"10:00:00Z","id":"01234567-89ab-cdef-0123-456789abcdef"}',
      '{"at":"2024-01-01T00:00:00Z","day":"2024-01-01","t":"24:00:00Z","id":"01234567-89ab-cdef-0123-456789abcdef"}',
      '{"at":"2024-01-01T00:00:00Z","day":"2024-01-01","t":"10:00:00Z","id":"01234567-89ab-cdef-0123-456789abcde"}',
      '{"at":"2024-01-01T00:00:00Z","day":"2024-04-31","t":"10:00:00Z","id":"01234567-89ab-cdef-0123-456789abcdef"}',
    ],
  },
  {
    name: 'anyOf',
    schema: { anyOf: [{ type: 'string', maxLength: 2 }, { type: 'integer', minimum: 10 }, { type: 'object', properties: { x: { type: 'null' } }, required: ['x'] }] },
    invalid: ['"abc"', '9', '-10', '{}', '{"x":1}', 'null', '[]'],
  },
  {
    name: 'an object of any keys with typed values',
    schema: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } },
    invalid: ['{"a":-1}', '{"a":"1"}', '{a:1}', '{"a":1,}', '[]'],
  },
  {
    name: 'any value under {}',
    schema: {},
    depth: 3,
    invalid: ['[[[[1]]]]', '{"a":{"b":{"c":{}}}}', '[1,]', '{"a"}', 'nul', '01', '"\t"', "'a'"],
  },
];
