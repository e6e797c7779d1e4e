/**
 * A row after the step's pass: what of its draft the verifier accepts, the
 * `tokens` event it emits (the accepted path and the bonus token, cut at an
 * end id, a stop string, maxTokens or the context, which is how the
 * generation finishes),
 * what goes into its cache, and what its drafter and the edge hear of it. A
 * chunk of a long prompt only goes into the cache. One object for the pool,
 * its verifier's buffers reused row after row: a row allocates only its
 * event (its ids, sources and log-probabilities).
 */
import { tokenSources, type PoolEvent, type TokenSource } from '../../shared/protocol';
import { TreeVerifier } from '../verify/tree-verifier';
import type { AcceptanceRecord } from '../budget/acceptance-record';
import type { PoolMetrics } from '../metrics/pool-metrics';
import { pushLogprobs, rankOf } from '../runtime/logprobs';
import type { StepRow } from '../runtime/step-types';
import type { BatchRunner, BatchStepResult, RunnerSequence } from './batch-runner';
import type { Generation } from './generation';
import type { PrefixReuse } from './prefix-reuse';
import { draftRoomFor } from './row-drafting';

/** What a step's rows emitted and drafted, counted into the metrics once per step. */
export interface StepCounts {
  /** Output tokens emitted. */
  generated: number;
  /** Prompt tokens of generations that emitted their first token. */
  promptTokens: number;
  /** Rows that verified a draft, the draft tokens they sent, and how many were accepted. */
  drafts: number;
  draftTokens: number;
  accepted: number;
}

/** How a generation ends in acceptance: at an end id or a stop string, at maxTokens, at the context, or cancelled. */
export type AcceptanceEnd = 'stop' | 'length' | 'context_length' | 'cancelled';

export interface RowAcceptanceOptions<S extends RunnerSequence> {
  runner: BatchRunner<S>;
  maxTreeNodes: number;
  metrics: PoolMetrics;
  /** What each kind of draft has had accepted (the drafting side reads it: row-drafting.ts). */
  acceptance: AcceptanceRecord;
  /** The prefix cache a running prompt is shared with; null: none. */
  prefixes: PrefixReuse<S> | null;
  // Methods, not function-typed fields: those would make a Scheduler<S> no Scheduler<RunnerSequence>.
  /** Ends a generation (Scheduler.finish). */
  finish(gen: Generation<S>, reason: AcceptanceEnd): void;
  /** A drafter that threw: the row goes on without speculation (Scheduler.dropDrafter). */
  dropDrafter(gen: Generation<S>, err: unknown): void;
}

export class RowAcceptance<S extends RunnerSequence> {
  private readonly verifier: TreeVerifier;
  private readonly contextLength: number;
  private readonly metrics: PoolMetrics;
  private readonly acceptance: AcceptanceRecord;
  private readonly prefixes: PrefixReuse<S> | null;
  /** For finish and dropDrafter (called through it: see RowAcceptanceOptions). */
  private readonly options: RowAcceptanceOptions<S>;

  constructor(options: RowAcceptanceOptions<S>) {
    const { config } = options.runner;
    this.contextLength = config.contextLength;
    this.verifier = new TreeVerifier(config.vocabSize, config.contextLength + options.maxTreeNodes + 2);
    this.metrics = options.metrics;
    this.acceptance = options.acceptance;
    this.prefixes = options.prefixes;
    this.options = options;
  }

  /**
   * One row after the pass: a prompt chunk goes into the cache; otherwise its
   * tree is verified, the accepted path and the bonus token are emitted (cut
   * at a stop token, maxTokens or the context), committed to its cache, and
   * fed to its drafter, and the generation finishes where it was cut.
   */
  accept(gen: Generation<S>, r: number, row: StepRow, result: BatchStepResult, emittedAt: number, counts: StepCounts): void {
    if (gen.cancelled) {
      this.options.finish(gen, gen.cancelReason);
      return;
    }
    const chain = gen.feedLength;
    if (chain < gen.pendingLength) {
      // A chunk of a long prompt: into the cache; the rest goes in next step. A scored one keeps this chunk's scores.
      // Not a preempted generation's context fed again (preemption.ts): its prompt's scores were sent.
      if (gen.request.promptLogprobs !== undefined && gen.output.length === 0) this.scorePromptChunk(gen, result, r, row.tokens, chain, gen.pending[chain]);
      this.commit(gen, result, r, chain, 0);
      gen.pending = gen.pending.subarray(chain);
      gen.pendingLength -= chain;
      return;
    }
    const rootIndex = chain - 1;
    const { metrics } = this;
    const v = this.verifier;
    if (gen.steps === 0 && gen.request.promptLogprobs !== undefined) this.sendPromptLogprobs(gen, result, r, row.tokens, chain);
    if (gen.request.maxTokens === 0) {
      // Only the prompt was asked for (scored above, or just read).
      gen.steps++;
      counts.promptTokens += gen.promptIds.length;
      this.commitForPrefixCache(gen, result, r, chain, 0);
      this.options.finish(gen, 'length');
      return;
    }
    const accepted = gen.noise
      ? v.verifySampled(row, gen.rowLength, rootIndex, result, r, gen.request.sampling, null, gen.noise, gen.sequenceLength, gen.adjustments)
      : v.verifyGreedy(row, gen.rowLength, rootIndex, result, r, gen.adjustments);

    gen.steps++;
    if (gen.steps === 1) counts.promptTokens += gen.promptIds.length;
    // The drafts' calibration learns from what verification accepted, wherever the output is cut below.
    if (gen.treeUsed > 0 && gen.chainStep) {
      if (!gen.historyChainStep) gen.chainCalibration!.record(gen.tree!.probs, gen.treeUsed, accepted);
    } else if (gen.treeUsed > 0) {
      const tree = gen.tree!;
      let predicted = 0;
      for (let i = chain; i < gen.rowLength; i++) predicted += tree.probs[gen.rowToTree[i]];
      const record = this.acceptance.recordTree(gen.acceptanceKey, gen.acceptedPerDraft, predicted, accepted);
      // A probe's outcome alone decides whether the row drafts on (RowDrafting.noteSkip): its record is what stopped it.
      gen.acceptedPerDraft = gen.probing ? accepted : record;
    }

    // Emitted tokens: accepted path + bonus, cut at an end id / a stop string / maxTokens / context.
    const ids: number[] = [];
    const sources: TokenSource[] = [];
    const wantLogprobs = gen.request.logprobs;
    const logprobIds = gen.request.logprobIds;
    const logprobs: number[] | undefined = wantLogprobs === undefined ? undefined : [];
    // Listed ids (logprobIds) stand in for the most likely tokens, whatever their count.
    const alternatives: Array<Array<[number, number]>> | undefined = logprobs && (wantLogprobs || logprobIds) ? [] : undefined;
    let reason: 'stop' | 'length' | 'context_length' | null = null;
    // As plain decoding: the last token may sit at position contextLength (emitted, never fed).
    const limit = Math.min(gen.request.maxTokens - gen.output.length, this.contextLength + 1 - gen.sequenceLength);
    for (let k = 0; k <= accepted && reason === null; k++) {
      let token: number;
      let source: TokenSource;
      if (k < accepted) {
        const rowIndex = v.acceptedPath[k];
        token = row.tokens[rowIndex];
        source = tokenSources[gen.tree!.sources[gen.rowToTree[rowIndex]]] ?? 'model';
      } else if (v.maskedOut) {
        break; // No bonus: the request's masks left none after the path.
      } else {
        token = v.bonusToken;
        source = 'model';
      }
      ids.push(token);
      sources.push(source);
      if (logprobs) {
        // The token was chosen at its parent: the root, then each accepted node in turn.
        pushLogprobs(result.logitsAt(r, k === 0 ? rootIndex : v.acceptedPath[k - 1]), token, wantLogprobs!, logprobs, alternatives ?? null, logprobIds);
      }
      if (source === 'edge') gen.edgeAcceptedSinceTrie++;
      if (gen.endIds.has(token)) reason = 'stop';
      // Its text completes a stop string: the edge ends the text there, so nothing after it is generated.
      else if (gen.stopStrings !== null && gen.stopStrings.push(token)) reason = 'stop';
      else if (ids.length >= gen.request.maxTokens - gen.output.length) reason = 'length';
      else if (ids.length >= limit) reason = 'context_length';
    }
    // Usage and metrics: accepted draft tokens are those the output keeps (a path cut at an end id, a stop string or
    // the limit counts as accepted only up to the cut, so a request's accepted_tokens never passes its completion_tokens).
    const kept = Math.min(accepted, ids.length);
    if (gen.treeUsed > 0) {
      gen.drafts++;
      gen.draftTokens += gen.treeUsed;
      gen.acceptedTokens += kept;
      counts.drafts++;
      counts.draftTokens += gen.treeUsed;
      counts.accepted += kept;
      for (let k = 0; k < kept; k++) metrics.recordAccepted(k);
    }
    for (const id of ids) gen.output.push(id);
    if (gen.adjustments) for (const id of ids) gen.adjustments.observe(id);
    counts.generated += ids.length;
    metrics.tenants.addOutput(gen.tenantSlot, ids.length);
    const tokensEvent: Extract<PoolEvent, { type: 'tokens' }> = { type: 'tokens', ids, sources, drafted: gen.treeUsed, accepted: kept };
    if (logprobs) tokensEvent.logprobs = logprobs;
    if (alternatives) tokensEvent.topLogprobs = alternatives;
    gen.sink.send(tokensEvent);
    if (gen.lastTokenAt === 0) {
      gen.firstTokenAt = emittedAt;
      metrics.timeToFirstToken.observe((emittedAt - gen.submittedAt) / 1000);
    }
    else metrics.interTokenLatency.observe((emittedAt - gen.lastTokenAt) / 1000);
    gen.lastTokenAt = emittedAt;
    if (reason !== null) {
      // Of the accepted path, the tokens emitted before the cut (the bonus, if emitted, was never fed).
      this.commitForPrefixCache(gen, result, r, chain, Math.min(accepted, ids.length));
      this.options.finish(gen, reason);
      return;
    }
    // Its path sent, the generation ends as plain decoding's would at the next token: the request's fault.
    if (v.maskedOut) throw v.maskedOut;

    // Commit the chain and the accepted path; the bonus token is next step's chain.
    this.commit(gen, result, r, chain, accepted);
    // The prompt (or the part of it the prefix cache did not hold) was the chain: the bonus token gets a
    // buffer of its own, and the prompt, now all in the cache, is offered to other prompts while this runs.
    if (gen.pending.buffer === gen.promptIds.buffer) {
      gen.pending = new Int32Array(1);
      this.prefixes?.share(gen);
    }
    gen.pending[0] = ids[ids.length - 1];
    gen.pendingLength = 1;

    // Its next token is its last (maxTokens, or the context): nothing left to draft, so nothing to feed the drafter.
    if (gen.drafter && draftRoomFor(gen.sequenceLength, gen.output.length, gen.request.maxTokens, this.contextLength) === 0) gen.retireDrafter();
    if (gen.drafter) {
      try {
        gen.drafter.accept(ids);
      } catch (err) {
        this.options.dropDrafter(gen, err);
      }
    }
    if (gen.drafter) {
      // A history chain that ran out asks for a fresh trie as an exhausted
      // trie does (the edge's next may go on with it): in a wide batch the
      // drafter is never built and its follower never runs out.
      let chainEnded = false;
      if (gen.historyChain) {
        gen.historyChain.advanceAll(ids);
        if (!gen.historyChain.onChainAhead) {
          gen.historyChain = null;
          chainEnded = true;
        }
      }
      // The hint costs the edge a re-draft and the pool a request to read:
      // it is sent only when the trie it replaces got tokens accepted (a
      // user cache with nothing for this text would only answer with
      // another trie that goes unused; on the 2-core VM, hints after
      // every exhaustion cost more time than their tries saved).
      if (!gen.trieExhaustedSent && gen.edgeAcceptedSinceTrie > 0 && (chainEnded || this.edgeTrieExhaustedNow(gen))) {
        gen.trieExhaustedSent = true;
        metrics.trieHints.inc();
        gen.sink.send({ type: 'trie-exhausted', outputLength: gen.output.length });
      }
    }
  }

  /**
   * A generation's last step: its fed tokens' keys/values into the cache
   * too, before finish offers the cache to the prefix cache (else a
   * generation that ends in its first step, its whole answer drafted, would
   * leave nothing of its prompt there). Nothing to do without a prefix cache.
   */
  private commitForPrefixCache(gen: Generation<S>, result: BatchStepResult, r: number, chain: number, pathTokens: number): void {
    if (this.prefixes) this.commit(gen, result, r, chain, pathTokens);
  }

  /** Commits row r's fed chain and the first `pathTokens` nodes of its accepted path to its cache. */
  private commit(gen: Generation<S>, result: BatchStepResult, r: number, chain: number, pathTokens: number): void {
    const commit = gen.commitBuffer;
    for (let i = 0; i < chain; i++) commit[i] = i;
    for (let k = 0; k < pathTokens; k++) commit[chain + k] = this.verifier.acceptedPath[k];
    result.commit(r, commit.subarray(0, chain + pathTokens));
  }

  /**
   * A chunk of a scored prompt (not its last): the log-probabilities of its
   * tokens after its first, and of the next chunk's first token, from the
   * logits at the position before each; kept until the prompt is in.
   */
  private scorePromptChunk(gen: Generation<S>, result: { logitsAt(rowIndex: number, tokenIndex: number): Float32Array }, r: number, tokens: Int32Array, chain: number, next: number): void {
    const scores = this.scoreChunk(gen, result, r, tokens, chain);
    const n = gen.request.promptLogprobs!;
    const logits = result.logitsAt(r, chain - 1);
    pushLogprobs(logits, next, n, scores.logprobs, n > 0 ? scores.top : null);
    scores.ranks.push(rankOf(logits, next));
  }

  /** Into the prompt's scores so far: each of this chunk's tokens after its first, from the logits at the position before it. */
  private scoreChunk(gen: Generation<S>, result: { logitsAt(rowIndex: number, tokenIndex: number): Float32Array }, r: number, tokens: Int32Array, chain: number): NonNullable<Generation<S>['promptScores']> {
    const n = gen.request.promptLogprobs!;
    const scores = (gen.promptScores ??= { logprobs: [], top: [], ranks: [] });
    for (let i = 1; i < chain; i++) {
      const logits = result.logitsAt(r, i - 1);
      pushLogprobs(logits, tokens[i], n, scores.logprobs, n > 0 ? scores.top : null);
      scores.ranks.push(rankOf(logits, tokens[i]));
    }
    return scores;
  }

  /** The prompt's own log-probabilities, read off the prefill: token i given tokens 0..i-1, from the logits at i-1 (earlier chunks' kept in promptScores). */
  private sendPromptLogprobs(gen: Generation<S>, result: { logitsAt(rowIndex: number, tokenIndex: number): Float32Array }, r: number, tokens: Int32Array, chain: number): void {
    const { logprobs, top, ranks } = this.scoreChunk(gen, result, r, tokens, chain);
    gen.promptScores = null;
    gen.sink.send(gen.request.promptLogprobs! > 0 ? { type: 'prompt-logprobs', logprobs, topLogprobs: top, ranks } : { type: 'prompt-logprobs', logprobs, ranks });
  }

  /**
   * Whether a row following an edge trie has left it, as of this step's
   * tokens: a lazy drafter takes them in now, which its next draft would do
   * (the hint came a step late from the last draft's state). Asked last, of
   * such rows only. A drafter that throws taking them in is dropped, as one
   * that throws drafting is: it costs speculation, never output.
   */
  private edgeTrieExhaustedNow(gen: Generation<S>): boolean {
    const drafter = gen.drafter;
    if (!drafter) return false;
    try {
      return drafter.edgeTrieExhaustedNow?.() ?? drafter.edgeTrieExhausted;
    } catch (err) {
      this.options.dropDrafter(gen, err);
      return false;
    }
  }
}
