/**
 * The fewest and most code points a regex's texts have, read off its tree:
 * each character class one, a concatenation the sum, an alternation its
 * shortest and longest branch, a repeat its counts. Where a length beside a
 * format says nothing its texts do not already keep to (a uuid's 36, a
 * bounded URL's under 2,083), the schema writer leaves the length out, rather
 * than build a product that, for a long maximum, is too large to follow.
 * Exact for a regex of plain characters (the formats'); a text written with
 * escapes has more code points than it decodes to, so patterns are not read so.
 */
import type { ExpressionNode } from './expression-node';

export interface LengthBounds {
  min: number;
  /** Infinity where a repeat is unbounded. */
  max: number;
}

export function textLengthBounds(node: ExpressionNode<never>): LengthBounds {
  switch (node.kind) {
    case 'empty':
      return { min: 0, max: 0 };
    case 'chars':
      return { min: 1, max: 1 };
    case 'concat': {
      let min = 0;
      let max = 0;
      for (const item of node.items) {
        const b = textLengthBounds(item);
        min += b.min;
        max += b.max;
      }
      return { min, max };
    }
    case 'alternation': {
      let min = Infinity;
      let max = 0;
      for (const item of node.items) {
        const b = textLengthBounds(item);
        min = Math.min(min, b.min);
        max = Math.max(max, b.max);
      }
      return { min, max };
    }
    case 'repeat': {
      const b = textLengthBounds(node.item);
      return { min: b.min * node.min, max: b.max === 0 ? 0 : b.max * node.max };
    }
    case 'jsonLength': {
      const b = textLengthBounds(node.item);
      return { min: Math.max(b.min, node.min), max: Math.min(b.max, node.max) };
    }
    case 'anyTail':
      return { min: 0, max: Infinity };
  }
}
