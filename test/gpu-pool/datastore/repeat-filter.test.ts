import { describe, expect, it } from 'vitest';
import { RepeatFilter } from '../../../gpu-pool/datastore/repeat-filter';

describe('RepeatFilter', () => {
  it('admits a text once, tells it from texts that differ by a token, its order or its length', () => {
    const f = new RepeatFilter();
    expect(f.admit([1, 2, 3])).toBe(true);
    expect(f.admit(Int32Array.from([1, 2, 3]))).toBe(false);
    expect(f.admit([1, 2, 4])).toBe(true);
    expect(f.admit([3, 2, 1])).toBe(true);
    expect(f.admit([1, 2, 3, 0])).toBe(true);
    expect(f.admit([])).toBe(true);
    expect(f.admit([])).toBe(false);
  });

  it('holds the newest texts only, a text seen again counting as new', () => {
    const f = new RepeatFilter(3);
    for (const t of [[1], [2], [3]]) f.admit(t);
    expect(f.admit([1])).toBe(false); // [1] is now the newest
    f.admit([4]); // [2] goes
    expect(f.size).toBe(3);
    expect(f.admit([1])).toBe(false);
    expect(f.admit([2])).toBe(true);
  });
});
