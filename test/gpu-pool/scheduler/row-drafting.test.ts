import { describe, expect, it } from 'vitest';
import { generateRequestSchema } from '../../../shared/protocol';
import { CostModel } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget, type BudgetRow } from '../../../gpu-pool/budget/tree-budget';
import { AcceptanceRecord } from '../../../gpu-pool/budget/acceptance-record';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { Generation, type Drafter } from '../../../gpu-pool/scheduler/generation';
import { RowDrafting, type DraftingStep, type DraftingTally } from '../../../gpu-pool/scheduler/row-drafting';
import type { RunnerSequence } from '../../../gpu-pool/scheduler/batch-runner';
import { CHAIN_NODES, MAX_PROBE_EVERY, PROBE_EVERY, PROBE_NODES } from '../../../gpu-pool/scheduler/row-drafting';
import { GumbelNoise } from '../../../shared/sampling/gumbel-noise';
import type { NextTokenTable } from '../../../shared/drafting/next-token-table';
import { countingTable } from '../../shared/drafting/counting-table';

// A prompt that repeats itself: the context source alone drafts its continuation.
const PROMPT = [1, 50, 60, 70, 80, 90, 50, 60, 70, 80, 90, 50, 60, 70];
const CONTEXT = 512;

function generation(drafter: Drafter | null, maxTokens = 64, promptIds = PROMPT): Generation<RunnerSequence> {
  const request = generateRequestSchema.parse({ id: 'g', promptIds, maxTokens, speculation: 'sssd' });
  return new Generation<RunnerSequence>(request, { send: () => {}, end: () => {} }, drafter, null, 32, promptIds.length + maxTokens);
}

/** A generation of PROMPT with the pool's own lazy fused drafter (no datastore). */
function fusedGeneration(): Generation<RunnerSequence> {
  const gen = generation(null);
  gen.drafter = drafterFactory(null)(gen.request);
  return gen;
}

/** Cheap tokens: the budget lets any row with accepted drafts go on drafting. */
const CHEAP = new CostModel({ fixed: 0.2, perRow: 0.01, perPaddedToken: 0.001, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });
/** The 2-core CPU's calibrated curve (2026-12-07): 0.42 ms a pass, 15 µs a token. */
const CPU = new CostModel({ fixed: 0.425, perRow: 0, perPaddedToken: 0, perToken: 0.0149, perTokenPair: 0, perPastToken: 0.0000134, perPastRow: 0.00034 });

function drafting(dropped: Generation<RunnerSequence>[] = [], chainTable: NextTokenTable | null = null, cost = CHEAP): RowDrafting {
  const budget = new TreeBudget(cost, { policy: 'marginal', maxNodes: 32 });
  return new RowDrafting({
    maxTreeNodes: 32,
    contextLength: CONTEXT,
    budget,
    chainTable,
    acceptance: new AcceptanceRecord(),
    dropDrafter: (gen) => {
      gen.drafter = null;
      dropped.push(gen);
    },
  });
}

const fusedStep = (): DraftingStep => ({ n: 1, cap: 16, userCap: 32, chains: false, lateChains: false, nearlyFree: true, method: 'sssd', maxPast: 0 });
const emptyTally = (): DraftingTally => ({ draftedRows: 0, buildMs: 0, chained: 0, chainMs: 0, unpaid: 0, resting: 0, probes: 0 });
const emptyRow = (): BudgetRow => ({ chainLength: 1, available: 0, probs: null, scale: 1 });

describe('RowDrafting', () => {
  it("drafts a prompt-fed row's fused tree under its last prompt token, and counts its first draft as building", () => {
    const gen = fusedGeneration();
    gen.feedLength = gen.pendingLength;
    const row = emptyRow();
    const tally = emptyTally();
    drafting().draft(gen, row, fusedStep(), tally);
    expect(gen.tree).not.toBeNull();
    expect(row.chainLength).toBe(PROMPT.length);
    expect(row.available).toBeGreaterThan(0);
    // The context's repeat: its first drafted token is the one that followed 70 before.
    const tree = gen.tree!;
    const firstLevel = Array.from({ length: tree.size }, (_, i) => i).filter((i) => tree.parents[i] === 0);
    expect(firstLevel.map((i) => tree.tokens[i])).toContain(80);
    // The lazy drafter was built by this draft: its time is kept out of the steady cost the budget learns.
    expect(tally.draftedRows).toBe(0);
    expect(tally.buildMs).toBeGreaterThan(0);
  });

  it('drafts nothing for a prompt still going in by chunks, until its last chunk', () => {
    const gen = fusedGeneration();
    gen.feedLength = 8;
    const row = emptyRow();
    drafting().draft(gen, row, fusedStep(), emptyTally());
    expect(gen.tree).toBeNull();
    expect(row.available).toBe(0);
    expect(gen.drafter!.built).toBe(false);
  });

  it('drafts nothing where the fused drafter sits the step out (cap 0) and the batch does not chain', () => {
    const gen = fusedGeneration();
    gen.feedLength = gen.pendingLength;
    const row = emptyRow();
    drafting().draft(gen, row, { ...fusedStep(), cap: 0 }, emptyTally());
    expect(gen.tree).toBeNull();
    expect(row.available).toBe(0);
  });

  it('drops a drafter that throws, and the row goes on plainly', () => {
    const broken: Drafter = {
      draft: () => {
        throw new Error('corrupt trie');
      },
      accept: () => {},
      pushEdgeTrie: () => {},
      edgeTrieExhausted: false,
    };
    const gen = generation(broken);
    gen.feedLength = gen.pendingLength;
    const dropped: Generation<RunnerSequence>[] = [];
    const row = emptyRow();
    drafting(dropped).draft(gen, row, fusedStep(), emptyTally());
    expect(dropped).toEqual([gen]);
    expect(gen.drafter).toBeNull();
    expect(row.available).toBe(0);
  });

  it('leaves a draft room of the tokens still allowed less the bonus slot, and none at the end of the context', () => {
    const d = drafting();
    const gen = generation(null, 5);
    expect(d.draftRoom(gen)).toBe(4);
    gen.output.push(7, 7, 7);
    expect(d.draftRoom(gen)).toBe(1);
    const full = generation(null, 64, [1, ...new Array<number>(CONTEXT - 1).fill(9)]);
    expect(d.draftRoom(full)).toBe(0);
  });

  describe('rows whose drafts do not pay back off', () => {
    /** A drafting row of PROMPT whose record says it accepts `accepted` of the `sent` tokens it sends a drafted step. */
    function recorded(accepted: number, sent: number): Generation<RunnerSequence> {
      const gen = fusedGeneration();
      gen.feedLength = gen.pendingLength;
      gen.acceptedPerDraft = accepted;
      gen.sentPerDraft = sent;
      return gen;
    }

    /**
     * `steps` speculating steps of a lone row whose probes all fail (what the
     * scheduler records of a probe that got nothing accepted): the steps it
     * drafted (1-based), the most nodes a probe offered, and the tally.
     */
    function backOff(gen: Generation<RunnerSequence>, steps: number) {
      const d = drafting([], null, CPU);
      const tally = emptyTally();
      const drafted: number[] = [];
      let largestProbe = 0;
      for (let i = 1; i <= steps; i++) {
        const row = emptyRow();
        d.draft(gen, row, fusedStep(), tally);
        if (gen.tree === null) continue;
        drafted.push(i);
        expect(gen.probing).toBe(true);
        largestProbe = Math.max(largestProbe, row.available);
        gen.acceptedPerDraft = 0;
        gen.sentPerDraft = row.available;
      }
      return { drafted, largestProbe, tally };
    }

    it('stops a row whose drafts are accepted at a few percent, and probes it with small drafts, each failed probe doubling the wait', () => {
      // 0.3 of 9 tokens a step (3%): the row's own record, whatever its method's.
      const gen = recorded(0.3, 9);
      const { drafted, largestProbe, tally } = backOff(gen, 130);
      expect(drafted).toEqual([2, 6, 14, 30, 62, 126]);
      expect(largestProbe).toBeGreaterThan(0);
      expect(largestProbe).toBeLessThanOrEqual(PROBE_NODES);
      expect(tally.probes).toBe(6);
      expect(tally.unpaid).toBe(124);
      expect(tally.resting).toBe(0);
      // The wait stops doubling at MAX_PROBE_EVERY.
      expect(gen.probeEvery).toBe(MAX_PROBE_EVERY);
    });

    it('a probe that was accepted starts the row drafting again at its usual size, and ends its back-off', () => {
      const gen = recorded(0.3, 9);
      backOff(gen, 14);
      expect(gen.probeEvery).toBe(8);
      // The next probe (step 30) gets 2 of its 4 accepted: what the scheduler records is the probe's own outcome.
      const d = drafting([], null, CPU);
      for (let i = 15; i < 30; i++) d.draft(gen, emptyRow(), fusedStep(), emptyTally());
      d.draft(gen, emptyRow(), fusedStep(), emptyTally());
      expect(gen.probing).toBe(true);
      gen.acceptedPerDraft = 2;
      gen.sentPerDraft = 4;
      const row = emptyRow();
      const tally = emptyTally();
      d.draft(gen, row, fusedStep(), tally);
      expect(gen.probing).toBe(false);
      expect(gen.backedOff).toBe(false);
      expect(gen.probeEvery).toBe(PROBE_EVERY);
      // Not a probe: sized by what the budget has been sending (ceil(4 · 1.25) + 2), past a probe's cap.
      expect(row.available).toBeGreaterThan(PROBE_NODES);
      expect(tally).toMatchObject({ probes: 0, unpaid: 0 });
    });

    it('a row whose drafts are mostly accepted keeps drafting, every step, at its usual size', () => {
      // As sssd's greedy rows on dev-sessions: 58% of 16.
      const gen = recorded(9.3, 16);
      const d = drafting([], null, CPU);
      const tally = emptyTally();
      for (let i = 0; i < 20; i++) {
        const row = emptyRow();
        d.draft(gen, row, fusedStep(), tally);
        expect(row.available).toBeGreaterThan(PROBE_NODES);
      }
      expect(tally).toMatchObject({ probes: 0, unpaid: 0, resting: 0 });
    });

    it('a row the budget keeps refusing rests as before: a full draft every 8th step, counted apart', () => {
      const gen = recorded(9, 16);
      gen.refusedSteps = 2;
      const d = drafting([], null, CPU);
      const tally = emptyTally();
      const drafted: number[] = [];
      for (let i = 1; i <= 16; i++) {
        const row = emptyRow();
        d.draft(gen, row, fusedStep(), tally);
        if (gen.tree !== null) {
          drafted.push(i);
          expect(row.available).toBeGreaterThan(PROBE_NODES);
        }
      }
      expect(drafted).toEqual([8, 16]);
      expect(tally).toMatchObject({ probes: 0, unpaid: 0, resting: 14 });
    });
  });

  describe('with the model\'s next-token table', () => {
    // The table counts 1 2 3 4 5 6: after 3 4 comes 5, then 6.
    const COUNTING = [1, 2, 3, 4];

    function tableGeneration(sampling: { temperature: number; seed?: number }): Generation<RunnerSequence> {
      const request = generateRequestSchema.parse({ id: 'g', promptIds: COUNTING, maxTokens: 16, speculation: 'sssd', useDatastore: true, sampling });
      const noise = sampling.temperature > 0 ? new GumbelNoise(sampling.seed ?? 0) : null;
      const gen = new Generation<RunnerSequence>(request, { send: () => {}, end: () => {} }, drafterFactory(null)(request), noise, 32, COUNTING.length + 16);
      gen.feedLength = gen.pendingLength;
      return gen;
    }

    it('chains every sssd row in a batch the fused drafter sits out, from the table, at most CHAIN_NODES tokens', () => {
      const gen = tableGeneration({ temperature: 0 });
      const row = emptyRow();
      const tally = emptyTally();
      drafting([], countingTable()).draft(gen, row, { ...fusedStep(), n: 32, cap: 0, chains: true, nearlyFree: false }, tally);
      expect(gen.chainStep).toBe(true);
      expect(tally.chained).toBe(1);
      expect(row.available).toBeGreaterThan(0);
      expect(row.available).toBeLessThanOrEqual(CHAIN_NODES);
      expect(Array.from(gen.tree!.tokens.subarray(1, 3))).toEqual([5, 6]);
      // A chain never builds the fused drafter (its first draft would index the whole context).
      expect(gen.drafter!.built).toBe(false);
    });

    it('drafts a sampled row beside fused trees a coupled tree from the table, never building its fused drafter', () => {
      const gen = tableGeneration({ temperature: 0.7, seed: 11 });
      const row = emptyRow();
      const tally = emptyTally();
      drafting([], countingTable()).draft(gen, row, { ...fusedStep(), lateChains: true }, tally);
      expect(gen.tree).toBe(gen.tableTree);
      expect(gen.chainStep).toBe(false);
      expect(row.available).toBeGreaterThan(0);
      expect(gen.drafter!.built).toBe(false);
      expect(tally.chained).toBe(0);
    });

    it('drafts a greedy row beside them its fused tree', () => {
      const gen = tableGeneration({ temperature: 0 });
      drafting([], countingTable()).draft(gen, emptyRow(), { ...fusedStep(), lateChains: true }, emptyTally());
      expect(gen.tree).not.toBe(gen.tableTree);
      expect(gen.drafter!.built).toBe(true);
    });
  });
});
