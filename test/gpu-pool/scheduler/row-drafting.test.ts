import { describe, expect, it } from 'vitest';
import { generateRequestSchema } from '../../../shared/protocol';
import { CostModel } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget, type BudgetRow } from '../../../gpu-pool/budget/tree-budget';
import { AcceptanceRecord } from '../../../gpu-pool/budget/acceptance-record';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { Generation, type Drafter } from '../../../gpu-pool/scheduler/generation';
import { RowDrafting, type DraftingStep, type DraftingTally } from '../../../gpu-pool/scheduler/row-drafting';
import type { RunnerSequence } from '../../../gpu-pool/scheduler/batch-runner';

// A prompt that repeats itself: the context source alone drafts its continuation.
const PROMPT = [1, 50, 60, 70, 80, 90, 50, 60, 70, 80, 90, 50, 60, 70];
const CONTEXT = 512;

function generation(drafter: Drafter | null, maxTokens = 64, promptIds = PROMPT): Generation<RunnerSequence> {
  const request = generateRequestSchema.parse({ id: 'g', promptIds, maxTokens, speculation: 'sssd' });
  return new Generation<RunnerSequence>(request, { send: () => {}, end: () => {} }, drafter, null, 32, promptIds.length + maxTokens);
}

function drafting(dropped: Generation<RunnerSequence>[] = []): RowDrafting {
  // Cheap tokens: the budget lets any row with accepted drafts go on drafting.
  const budget = new TreeBudget(new CostModel({ fixed: 0.2, perRow: 0.01, perPaddedToken: 0.001, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 }), { policy: 'marginal', maxNodes: 32 });
  return new RowDrafting({
    maxTreeNodes: 32,
    contextLength: CONTEXT,
    budget,
    chainTable: null,
    acceptance: new AcceptanceRecord(),
    dropDrafter: (gen) => {
      gen.drafter = null;
      dropped.push(gen);
    },
  });
}

const fusedStep = (): DraftingStep => ({ n: 1, cap: 16, userCap: 32, chains: false, lateChains: false, nearlyFree: true, method: 'sssd', maxPast: 0 });
const emptyTally = (): DraftingTally => ({ draftedRows: 0, buildMs: 0, chained: 0, chainMs: 0 });
const emptyRow = (): BudgetRow => ({ chainLength: 1, available: 0, probs: null, scale: 1 });

describe('RowDrafting', () => {
  it("drafts a prompt-fed row's fused tree under its last prompt token, and counts its first draft as building", () => {
    const gen = generation(drafterFactory(null)(generateRequestSchema.parse({ id: 'g', promptIds: PROMPT, maxTokens: 64, speculation: 'sssd' })));
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
    const gen = generation(drafterFactory(null)(generateRequestSchema.parse({ id: 'g', promptIds: PROMPT, maxTokens: 64, speculation: 'sssd' })));
    gen.feedLength = 8;
    const row = emptyRow();
    drafting().draft(gen, row, fusedStep(), emptyTally());
    expect(gen.tree).toBeNull();
    expect(row.available).toBe(0);
    expect(gen.drafter!.built).toBe(false);
  });

  it('drafts nothing where the fused drafter sits the step out (cap 0) and the batch does not chain', () => {
    const gen = generation(drafterFactory(null)(generateRequestSchema.parse({ id: 'g', promptIds: PROMPT, maxTokens: 64, speculation: 'sssd' })));
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
});
