import { describe, expect, it } from 'vitest';
import { RecentlyChecked, RecentTexts } from '../../edge/recently-checked';

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

  it('keeps written texts by key, their lengths counted in its bound with the keys\'', () => {
    const written = new RecentTexts<string>(10, 25);
    written.set('grammar a', 'root ::= "a"');
    expect(written.get('grammar a')).toBe('root ::= "a"');
    expect(written.get('grammar b')).toBeUndefined();
    // 9 + 12 characters, then 2 and 5 more: past 25, the least recent goes.
    written.set('b', 'x');
    expect(written.get('b')).toBe('x');
    written.set('c', 'yyyy');
    expect([written.get('grammar a'), written.get('b'), written.get('c')]).toEqual([undefined, 'x', 'yyyy']);
  });
});
