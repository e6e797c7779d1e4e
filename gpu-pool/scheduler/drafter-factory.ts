/**
 * Builds a generation's drafter from its request: the speculation method, the
 * edge trie shipped with it (base64), and the global datastore unless the
 * request turns it off (`useDatastore: false`).
 *
 * The RequestDrafter itself is built lazily, at the first step that asks for a
 * draft (LazyDrafter below): building it indexes the whole prompt (0.4-1.7 ms
 * per request on the development machine), work that is wasted whenever the
 * budget or governor keeps speculation off (large batches), and that, paid in
 * submit(), ran in the HTTP handler where neither the budget nor the governor
 * could see it. The trie's base64 is still checked at admission (a bad trie
 * is a 400).
 */
import { followsEdgeTries, type GenerateRequest } from '../../shared/protocol';
import type { DatastoreLike } from '../../shared/drafting/datastore-source';
import type { DraftTree } from '../../shared/drafting/draft-tree';
import type { FusionWeights } from '../../shared/drafting/fusion';
import type { NextTokenTable } from '../../shared/drafting/next-token-table';
import { RequestDrafter } from '../../shared/drafting/request-drafter';
import { AdmissionError } from './admission-error';
import { decodeBase64, NOT_BASE64 } from './base64';
import type { Drafter } from './generation';

export function drafterFactory(
  datastore: DatastoreLike | null,
  nextTokens: NextTokenTable | null = null,
  weights?: FusionWeights,
): (request: GenerateRequest, expectedLength?: number) => Drafter | null {
  return (request, expectedLength) => {
    if (request.speculation === 'off') return null;
    let edgeTrie: Uint8Array | undefined;
    if (request.trie !== undefined && followsEdgeTries(request.speculation)) {
      const bytes = decodeBase64(request.trie);
      if (!bytes) throw new AdmissionError('bad_request', `trie: ${NOT_BASE64}`);
      edgeTrie = bytes;
    }
    const store = request.useDatastore && datastore ? datastore : undefined;
    // The lazy drafter's closure lives as long as the generation: it holds what it needs, not the request (a trie's text).
    const { speculation: method, promptIds, predictionIds, sampling } = request;
    return new LazyDrafter(
      () =>
        new RequestDrafter({
          method,
          promptIds,
          expectedLength,
          predictionIds,
          edgeTrie,
          datastore: store,
          nextTokens: store && nextTokens ? nextTokens : undefined,
          weights,
          // The scheduler has seeded every sampled request by now.
          ...(sampling.temperature > 0 && sampling.seed !== undefined ? { sampling: { seed: sampling.seed, temperature: sampling.temperature } } : {}),
        }),
      edgeTrie ?? null,
    );
  };
}

/**
 * A Drafter that does its work only when a draft is asked for: the real one is
 * built at the first draft(), and emitted tokens are queued and fed to it at
 * the next draft() rather than every step. Feeding a token costs the context
 * trie an insertion per suffix (window 16) and the edge trie a walk; with
 * speculation off for a large batch that was ~0.02 ms per row per step, for
 * drafts nobody asked for. The state a draft sees is exactly the one an eager
 * drafter would have: the same tokens, in the same order, with a pushed edge
 * trie applied at the point of the stream where it arrived.
 */
export class LazyDrafter implements Drafter {
  private inner: Drafter | null = null;
  /** Emitted tokens not fed to `inner` yet. */
  private pending: number[] = [];
  /** A pushed edge trie waiting for `inner`, and how many pending tokens came before it. */
  private pushed: { bytes: Uint8Array; outputLength: number; after: number } | null = null;

  constructor(
    private readonly build: () => Drafter,
    /** The edge trie shipped with the request (decoded once, at admission), if any. */
    readonly shippedTrie: Uint8Array | null = null,
  ) {}

  /** Whether the real drafter has been built. */
  get built(): boolean {
    return this.inner !== null;
  }

  /** Emitted tokens not fed yet, plus context the built drafter has still to index (a long prompt's). */
  get queuedTokens(): number {
    return this.pending.length + (this.inner?.queuedTokens ?? 0);
  }

  draft(budget: number): DraftTree {
    const inner = this.inner ?? (this.inner = this.build());
    this.flush(inner);
    return inner.draft(budget);
  }

  accept(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) this.pending.push(tokens[i]);
  }

  pushEdgeTrie(trie: Uint8Array, outputLength: number): void {
    // Only the latest trie matters (a push replaces the follower); it is checked
    // against the context as it stood when the trie arrived.
    this.pushed = { bytes: trie, outputLength, after: this.pending.length };
  }

  /**
   * As of the last draft (queued tokens are not followed until the next one):
   * the edge's refresh hint only matters while drafts are being made.
   */
  get edgeTrieExhausted(): boolean {
    return this.inner !== null && this.inner.edgeTrieExhausted;
  }

  /** Takes the queued tokens in first: only for a row following an edge trie, which drafts at its next step anyway. */
  edgeTrieExhaustedNow(): boolean {
    if (this.inner === null) return false;
    if (this.pending.length > 0 || this.pushed) this.flush(this.inner);
    return this.inner.edgeTrieExhausted;
  }

  release(): void {
    this.inner?.release?.();
    this.pending = [];
    this.pushed = null;
  }

  private flush(inner: Drafter): void {
    const pending = this.pending;
    const pushed = this.pushed;
    const split = pushed ? pushed.after : pending.length;
    if (split > 0) inner.accept(split === pending.length ? pending : pending.slice(0, split));
    if (pushed) inner.pushEdgeTrie(pushed.bytes, pushed.outputLength);
    if (split < pending.length) inner.accept(pending.slice(split));
    this.pending = [];
    this.pushed = null;
  }
}
