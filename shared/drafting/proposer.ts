/**
 * One interface for every drafting method (as vLLM v1's spec_decode
 * proposers): the request drafter feeds it the context as it grows and asks
 * it for a tree of at most `budget` draft nodes rooted at the last token.
 */
import type { DraftTree } from './draft-tree';
import type { DraftCoupling } from './fusion';
import type { TokenBuffer } from './token-buffer';

export interface Proposer {
  /** context.data[from..to) were just appended (the prompt first, then accepted tokens). */
  observe(context: TokenBuffer, from: number, to: number): void;
  /** A tree rooted at context.last; valid until the next call. */
  propose(context: TokenBuffer, budget: number): DraftTree;
  /**
   * Text the output is expected to resemble (OpenAI's predicted output: a
   * file being edited, say), given before the prompt is observed; drafted
   * from like the context. Proposers that draw on no context ignore it.
   */
  predict?(tokens: ArrayLike<number>): void;
  /** From now on draft for a sampled request with this noise (coupled drafting, see fusion.ts); proposers without fusion ignore it. */
  couple?(coupling: DraftCoupling): void;
  /** The request is over: pooled memory goes back (a proposer must not be used after). */
  release?(): void;
}
