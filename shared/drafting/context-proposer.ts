/** The SSSD context source alone: prompt + self-output count trie, fused into a tree. */
import { ContextTrie, type ContextTrieOptions } from './context-trie';
import { addContextCandidates } from './context-source';
import { type DraftTree, createDraftTree } from './draft-tree';
import { type DraftCoupling, type FusionWeights, TreeFuser, defaultFusionWeights, sourceLimit } from './fusion';
import type { Proposer } from './proposer';
import type { TokenBuffer } from './token-buffer';

export class ContextProposer implements Proposer {
  readonly trie: ContextTrie;
  /** This proposer's tree (returned by propose, reused by the next call); the fuser is shared scratch. */
  private tree = createDraftTree(33);

  constructor(
    private readonly weights: FusionWeights = defaultFusionWeights,
    trieOptions: ContextTrieOptions = {},
  ) {
    this.trie = new ContextTrie(trieOptions);
  }

  /** Set for a sampled request: drafts follow its noise (firstIndex updated at each propose). */
  private coupling: DraftCoupling | null = null;

  couple(coupling: DraftCoupling): void {
    this.coupling = coupling;
  }

  release(): void {
    this.trie.release();
  }

  predict(tokens: ArrayLike<number>): void {
    this.trie.appendAll(tokens);
    this.trie.breakWindows();
  }

  observe(context: TokenBuffer, from: number, to: number): void {
    this.trie.appendAll(context.data, from, to);
  }

  propose(context: TokenBuffer, budget: number): DraftTree {
    const fuser = TreeFuser.shared();
    fuser.begin();
    addContextCandidates(fuser, this.trie, context.data, context.length, this.weights, sourceLimit(budget, this.weights));
    if (this.tree.tokens.length < budget + 1) this.tree = createDraftTree(Math.max(budget + 1, this.tree.tokens.length * 2));
    if (this.coupling) this.coupling.firstIndex = context.length;
    return fuser.build(context.last, budget, this.weights, this.tree, this.coupling);
  }
}
