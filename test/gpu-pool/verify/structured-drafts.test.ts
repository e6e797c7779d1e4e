/**
 * Drafts cut to a structured output's language: a node whose token would take
 * its path's text out of the language goes, with everything under it; the
 * rest keep their order, parents and estimates, so the budget prices and the
 * pass carries only tokens that can be accepted.
 */
import { describe, expect, it } from 'vitest';
import { appendNode, createDraftTree, pathTokens, validateDraftTree } from '../../../shared/drafting/draft-tree';
import { pruneToLanguage } from '../../../gpu-pool/verify/structured-drafts';
import { TextMasks } from '../../../gpu-pool/verify/text-masks';
import { TokenTexts, type TextsTokenizer } from '../../../gpu-pool/verify/token-texts';
import { PieceDecoder, pieceBytes, SILENT_PIECE, TEXT_PIECE, type PieceTable } from '../../../shared/tokenizer/incremental-decoder';

/** A vocabulary by id: 0 the end token, 1 BOS, then text pieces. */
const PIECES: Array<string | null> = [null, null, 'ye', 's', 'yes', 'no', 'n', 'o', 'x', ' '];
const END = 0;

function tokenizer(): TextsTokenizer {
  const texts = PIECES.map((p) => p ?? '');
  const table: PieceTable = { texts, textsAfterBos: texts, kinds: Int16Array.from(PIECES, (p) => (p === null ? SILENT_PIECE : TEXT_PIECE)), bosId: 1 };
  return { vocabSize: PIECES.length, bosId: 1, createDecoder: (opts) => new PieceDecoder(table, opts), tokenBytes: (id) => pieceBytes(table, id) };
}

const texts = TokenTexts.of(tokenizer());

describe('pruneToLanguage', () => {
  it('cuts the nodes the language forbids and everything under them, keeping the rest in order', () => {
    const masks = TextMasks.ofChoices(['yes', 'no'], texts, [END], false);
    const tree = createDraftTree(16, 7);
    const ye = appendNode(tree, 0, 2, 0.9, 1); // 'ye'
    const x = appendNode(tree, 0, 8, 0.8, 2); // 'x': no choice
    appendNode(tree, x, 3, 0.7, 2); // under 'x': cut with it
    const n = appendNode(tree, 0, 6, 0.6, 3); // 'n'
    appendNode(tree, ye, 3, 0.5, 1); // 'yes'
    appendNode(tree, ye, 7, 0.4, 1); // 'yeo'
    appendNode(tree, n, 7, 0.3, 3); // 'no'
    appendNode(tree, n, END, 0.2, 3); // the end token after 'n': not a whole choice (and it prints nothing)
    const calibrated = Float32Array.from(tree.probs, (p) => p / 2);
    const size = pruneToLanguage(tree, calibrated, masks, new Int32Array(32));
    expect(size).toBe(5);
    expect(validateDraftTree(tree)).toBeNull();
    const paths = Array.from({ length: size - 1 }, (_, i) => pathTokens(tree, i + 1));
    expect(paths).toEqual([[2], [6], [2, 3], [6, 7]]);
    expect(Array.from(tree.probs.subarray(0, size))).toEqual(Array.from(Float32Array.from([1, 0.9, 0.6, 0.5, 0.3])));
    expect(Array.from(calibrated.subarray(1, size))).toEqual(Array.from(Float32Array.from([0.45, 0.3, 0.25, 0.15])));
    expect(Array.from(tree.sources.subarray(0, size))).toEqual([0, 1, 3, 1, 3]);
    expect(Array.from(tree.depths.subarray(0, size))).toEqual([0, 1, 1, 2, 2]);
  });

  it('follows the output written so far: a draft goes on from its state', () => {
    const masks = TextMasks.ofChoices(['yes', 'no'], texts, [END], false);
    masks.observe(2); // 'ye'
    const tree = createDraftTree(8, 2);
    appendNode(tree, 0, 3, 0.9, 1); // 's'
    appendNode(tree, 0, 4, 0.8, 1); // 'yes' after 'ye'
    expect(pruneToLanguage(tree, null, masks, new Int32Array(16))).toBe(2);
    expect(tree.tokens[1]).toBe(3);
  });

  it('leaves a tree whose parents do not all come first as it is', () => {
    const masks = TextMasks.ofChoices(['yes'], texts, [END], false);
    const tree = createDraftTree(4, 7);
    appendNode(tree, 0, 8, 0.5, 1);
    appendNode(tree, 1, 8, 0.5, 1);
    tree.parents[1] = 2;
    expect(pruneToLanguage(tree, null, masks, new Int32Array(8))).toBe(3);
    expect(tree.size).toBe(3);
  });
});
