import { describe, expect, it } from 'vitest';
import { RecentlyChecked } from '../../edge/recently-checked';

describe('texts checked lately', () => {
  it('keeps a text sent again and again while others come and go, and forgets the least recent past its count', () => {
    const checked = new RecentlyChecked(2, 1000);
    checked.add('schema');
    for (const other of ['a', 'b', 'c']) {
      expect(checked.has('schema')).toBe(true);
      checked.add(other);
    }
    expect(checked.has('schema')).toBe(true);
    expect([checked.has('a'), checked.has('b'), checked.has('c')]).toEqual([false, false, true]);
  });

  it('forgets the least recent past its characters, whatever its count', () => {
    const checked = new RecentlyChecked(10, 10);
    checked.add('x'.repeat(6));
    checked.add('y'.repeat(6));
    expect(checked.has('x'.repeat(6))).toBe(false);
    expect(checked.has('y'.repeat(6))).toBe(true);
  });
});
