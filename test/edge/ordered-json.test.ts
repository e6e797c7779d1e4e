// JSON text that keeps an ordered record's order where JavaScript would put
// its integer-like keys first, and is JSON.stringify's text for all else.
import { describe, expect, it } from 'vitest';
import { jsonText, keyOrderOf, withKeyOrder } from '../../edge/ordered-json';

describe('jsonText', () => {
  it("writes an ordered record's keys in its order, integer-like ones too, where JSON.stringify puts those first, ascending", () => {
    const top = withKeyOrder<number>({ '2': -1.58, '5': -1.79, '0': -1.81, ' the': -2, '12': -9 }, ['2', '5', '0', ' the', '12']);
    expect(JSON.stringify(top)).toBe('{"0":-1.81,"2":-1.58,"5":-1.79,"12":-9," the":-2}');
    expect(jsonText(top)).toBe('{"2":-1.58,"5":-1.79,"0":-1.81," the":-2,"12":-9}');
    // Nested as a reply holds them; the order is no key of the record to its readers.
    const reply = { choices: [{ text: '2', logprobs: { tokens: ['2'], top_logprobs: [top, null] } }] };
    expect(jsonText(reply)).toBe(`{"choices":[{"text":"2","logprobs":{"tokens":["2"],"top_logprobs":[${jsonText(top)},null]}}]}`);
    expect(Object.keys(top)).toEqual(['0', '2', '5', '12', ' the']);
    expect(top).toEqual({ '0': -1.81, '2': -1.58, '5': -1.79, '12': -9, ' the': -2 });
    expect(keyOrderOf(top)).toEqual(['2', '5', '0', ' the', '12']);
    expect(keyOrderOf({ a: 1 })).toBeUndefined();
  });

  it("is JSON.stringify's text for anything not ordered: escapes, numbers, left-out values, toJSON, prototype-less records", () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare['__proto__'] = 1;
    bare['toJSON'] = 2;
    bare['b'] = undefined;
    const values: unknown[] = [
      {
        s: 'quote " backslash \\ newline \n tab \t nul \u0000 lone \ud800 pair 😀 é',
        n: [0, -0, 1.5, -1e-7, 1e21, 2 ** 53, NaN, Infinity, -Infinity],
        b: [true, false, null],
        gone: undefined,
        f: () => 1,
        arr: [undefined, () => 1, Symbol('x'), { nested: [[], {}] }],
        date: new Date(0),
        custom: { toJSON: (key: string) => `key ${key}` },
        '3': 'three',
        bare,
      },
      [],
      'text',
      42,
      null,
    ];
    for (const value of values) expect(jsonText(value)).toBe(JSON.stringify(value));
  });

  it('refuses what has no JSON text, as JSON.stringify has none or throws', () => {
    expect(() => jsonText(undefined)).toThrow(TypeError);
    expect(() => jsonText({ n: 1n })).toThrow(TypeError);
  });
});
