import { logitsOf } from './logits-of';
import { NextTokenTableBuilder, type NextTokenTable } from '../../../shared/drafting/next-token-table';

/** Vocabulary of countingTable. */
export const COUNTING_VOCAB = 16;

/** The text 1 2 3 4 5 6 written twice, the model sure of each next token (0.7) with one runner-up (0.3 on 9). */
export function countingTable(): NextTokenTable {
  const b = new NextTokenTableBuilder(COUNTING_VOCAB);
  const text = [1, 2, 3, 4, 5, 6];
  for (let pass = 0; pass < 2; pass++) {
    for (let end = 2; end < text.length; end++) b.add(text, end, logitsOf({ [text[end]]: 0.7, 9: 0.3 }, COUNTING_VOCAB));
  }
  return b.build();
}
