import { describe, expect, it } from 'vitest';
import {
  appendNode,
  createDraftTree,
  longestMatchingPath,
  pathTokens,
  validateDraftTree,
} from '../../../shared/drafting/draft-tree';

function sample() {
  const t = createDraftTree(8, 42);
  const a = appendNode(t, 0, 5, 0.9, 2);
  const b = appendNode(t, 0, 6, 0.5, 3);
  const c = appendNode(t, a, 7, 0.4, 2);
  appendNode(t, c, 8, 0.3, 1);
  appendNode(t, b, 9, 0.2, 3);
  return t;
}

describe('DraftTree', () => {
  it('records parents before children with depths from the root', () => {
    const t = sample();
    expect(validateDraftTree(t)).toBeNull();
    expect(Array.from(t.depths.subarray(0, t.size))).toEqual([0, 1, 1, 2, 3, 2]);
    expect(pathTokens(t, 4)).toEqual([5, 7, 8]);
    expect(() => appendNode(t, 9, 1, 1, 0)).toThrow(RangeError);
  });

  it('walks greedy verification along the longest matching path', () => {
    const t = sample();
    expect(longestMatchingPath(t, [5, 7, 8, 1], 0)).toBe(4);
    expect(longestMatchingPath(t, [0, 6, 9], 1)).toBe(5);
    expect(longestMatchingPath(t, [5, 1], 0)).toBe(1);
    expect(longestMatchingPath(t, [3], 0)).toBe(0);
    expect(longestMatchingPath(t, [5, 7], 0)).toBe(3); // continuation ends inside the tree
  });
});
