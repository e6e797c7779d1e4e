// Deterministic random token corpora for the datastore tests.
export { seededRandom } from '../../support/seeded-random';

/** Story-like documents: ids in [2, vocab), built from a few repeated phrases so n-grams recur. */
export function randomDocuments(next: () => number, count: number, vocab: number, meanLength = 40): number[][] {
  const phrases: number[][] = [];
  for (let i = 0; i < 12; i++) {
    phrases.push(Array.from({ length: 2 + Math.floor(next() * 5) }, () => 2 + Math.floor(next() * (vocab - 2))));
  }
  const docs: number[][] = [];
  for (let d = 0; d < count; d++) {
    const doc = [1];
    const length = 1 + Math.floor(next() * 2 * meanLength);
    while (doc.length < length) {
      if (next() < 0.6) doc.push(...phrases[Math.floor(next() * phrases.length)]);
      else doc.push(2 + Math.floor(next() * (vocab - 2)));
    }
    if (next() < 0.5) doc.push(1); // the model ended the story
    docs.push(doc);
  }
  return docs;
}
