/** The SSSD context source alone: prompt + self-output count trie, fused into a tree. */
import { ContextTrie, type ContextTrieOptions } from './context-trie';
import { addContextCandidates } from './context-source';
import type { DraftTree } from './draft-tree';
import { type FusionWeights, TreeFuser, defaultFusionWeights, sourceLimit } from './fusion';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export class ContextProposer implements Proposer {
  readonly trie: ContextTrie;
  private readonly fuser = new TreeFuser(1024);

  constructor(
    private readonly weights: FusionWeights = defaultFusionWeights,
    trieOptions: ContextTrieOptions = {},
  ) {
    this.trie = new ContextTrie(trieOptions);
  }

  observe(context: TokenBuffer, from: number, to: number): void {
    this.trie.appendAll(context.data, from, to);
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    this.fuser.begin();
    addContextCandidates(this.fuser, this.trie, context.data, context.length, this.weights, sourceLimit(budget, this.weights));
    return this.fuser.build(context.last, budget, this.weights);
  }
}
