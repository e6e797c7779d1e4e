import { describe, expect, it } from 'vitest';
import { spanText } from '../../shared/span-text';

describe('spanText', () => {
  it('says a span in the largest whole unit that fits', () => {
    expect(spanText(40_000)).toBe('40 s');
    expect(spanText(119_000)).toBe('119 s');
    expect(spanText(2 * 60_000 + 59_000)).toBe('2 min');
    expect(spanText(3 * 3_600_000 + 1_000)).toBe('3 h');
    expect(spanText(2 * 86_400_000)).toBe('2 days');
  });

  it('says no negative span (a clock set back)', () => {
    expect(spanText(-5_000)).toBe('0 s');
  });
});
