import { describe, expect, it } from 'vitest';
import { parseRegex } from '../../../shared/structured/regex-syntax';
import { textLengthBounds } from '../../../shared/structured/text-length-bounds';

describe("a regex's text lengths", () => {
  it('reads the fewest and most characters off the tree: classes one, sums, branches, counts, unbounded repeats', () => {
    const bounds = (r: string) => textLengthBounds(parseRegex(r));
    expect(bounds('')).toEqual({ min: 0, max: 0 });
    expect(bounds('[a-z]{8}-[0-9]{2,4}')).toEqual({ min: 11, max: 13 });
    expect(bounds('ab|c(?:de)?')).toEqual({ min: 1, max: 3 });
    expect(bounds('x[0-9]*')).toEqual({ min: 1, max: Infinity });
    expect(bounds('(?:)*a')).toEqual({ min: 1, max: 1 });
    expect(bounds('(?:a{2,3}){1,2}')).toEqual({ min: 2, max: 6 });
    // A JSON-length group keeps to both its bounds and its contents'.
    expect(bounds('(?json-length{2,5}:[a-z]{1,9})')).toEqual({ min: 2, max: 5 });
  });
});
