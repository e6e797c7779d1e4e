/** No speculation: the tree is the root alone (one token per step). */
import { type DraftTree, createDraftTree, resetDraftTree } from './draft-tree';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export class NoneProposer implements Proposer {
  private readonly tree = createDraftTree(1);

  observe(): void {}

  propose(context: TokenBuffer): DraftTree {
    resetDraftTree(this.tree, context.last);
    return this.tree;
  }
}
