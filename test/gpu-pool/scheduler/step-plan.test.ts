import { describe, expect, it } from 'vitest';
import { generateRequestSchema, type GenerateRequest } from '../../../shared/protocol';
import { CostModel } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget } from '../../../gpu-pool/budget/tree-budget';
import { AcceptanceRecord } from '../../../gpu-pool/budget/acceptance-record';
import { BatchSizeCaps } from '../../../gpu-pool/budget/batch-size-caps';
import { SpeculationGovernor } from '../../../gpu-pool/budget/speculation-governor';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { Generation } from '../../../gpu-pool/scheduler/generation';
import { RowDrafting } from '../../../gpu-pool/scheduler/row-drafting';
import { CHAIN_METHOD, GOVERNED_FROM_ROWS, StepPlanner, type StepPlan, type StepPlannerOptions } from '../../../gpu-pool/scheduler/step-plan';
import type { RunnerSequence } from '../../../gpu-pool/scheduler/batch-runner';
import { countingTable } from '../../shared/drafting/counting-table';

const PROMPT = [1, 50, 60, 70, 80, 90, 50, 60, 70];

/** A queued-then-admitted generation: its cache holds the prompt (the planner reads only its length). */
function generation(speculation: GenerateRequest['speculation'] = 'sssd', past = PROMPT.length): Generation<RunnerSequence> {
  const request = generateRequestSchema.parse({ id: 'g', promptIds: PROMPT, maxTokens: 64, speculation });
  const drafter = speculation === 'off' ? null : drafterFactory(null)(request);
  const gen = new Generation<RunnerSequence>(request, { send: () => {}, end: () => {} }, drafter, null, 32, PROMPT.length + 64);
  gen.cache = { length: past, release: () => {} };
  return gen;
}

/** A pass whose fixed cost is 12 tokens' worth: the knee the plan's rules are stated in. */
function budget(): TreeBudget {
  return new TreeBudget(new CostModel({ fixed: 0.2, perRow: 0.02, perPaddedToken: 0.02, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 }), { policy: 'marginal', maxNodes: 32 });
}

/** Answers every vote one way and records what it was asked, as "batch method". */
class FixedGovernor extends SpeculationGovernor {
  readonly asked: string[] = [];
  constructor(private readonly answer: boolean) {
    super();
  }
  override decide(batch: number, key = 'default'): boolean {
    this.asked.push(`${batch} ${key}`);
    return this.answer;
  }
}

function planner(overrides: Partial<StepPlannerOptions> = {}): StepPlanner {
  const b = overrides.budget === undefined ? budget() : overrides.budget;
  const table = countingTable();
  const drafting = new RowDrafting({ maxTreeNodes: 32, contextLength: 512, budget: b, chainTable: table, acceptance: new AcceptanceRecord(), dropDrafter: () => {} });
  return new StepPlanner({ budget: b, governor: null, chainTable: table, batchSizeCaps: null, maxTreeNodes: 32, drafting, ...overrides });
}

const emptyPlan = (): StepPlan => ({ n: 0, cap: 0, userCap: 0, chains: false, lateChains: false, nearlyFree: false, method: null, maxPast: 0, speculate: false });
const rows = (n: number, speculation: GenerateRequest['speculation'] = 'sssd'): Generation<RunnerSequence>[] => Array.from({ length: n }, () => generation(speculation));

describe('StepPlanner', () => {
  it('lets a lone sssd row draft a fused tree, the budget sizing it, with no vote', () => {
    const governor = new FixedGovernor(false);
    const plan = planner({ governor }).plan([generation('sssd', 40)], emptyPlan());
    expect(plan).toMatchObject({ n: 1, speculate: true, chains: false, lateChains: true, nearlyFree: true, method: 'sssd', maxPast: 40, userCap: 32 });
    expect(plan.cap).toBeGreaterThan(0);
    expect(governor.asked).toEqual([]);
  });

  it('has a batch chain from the table once two tokens a row pass the knee', () => {
    const b = budget();
    const wide = Math.floor(b.kneeTokens / 2) + 1;
    const plan = planner({ budget: b }).plan(rows(wide), emptyPlan());
    expect(plan).toMatchObject({ speculate: false, cap: 0, chains: true, method: 'sssd' });
    // One row fewer and the fused drafter keeps the batch.
    const narrow = planner({ budget: b }).plan(rows(wide - 1), emptyPlan());
    expect(narrow).toMatchObject({ speculate: true, chains: false });
  });

  it('puts chains to their own vote, and a refused vote leaves the batch plain', () => {
    const b = budget();
    const governor = new FixedGovernor(false);
    const wide = Math.floor(b.kneeTokens / 2) + 1;
    const plan = planner({ budget: b, governor }).plan(rows(wide), emptyPlan());
    expect(plan).toMatchObject({ speculate: false, chains: false, cap: 0 });
    expect(governor.asked).toEqual([`${wide} ${CHAIN_METHOD}`]);
  });

  it("drafts nothing at a batch size the operator's caps turn drafting off", () => {
    const caps = new BatchSizeCaps(32, {}, 3);
    const plan = planner({ batchSizeCaps: caps }).plan(rows(3), emptyPlan());
    expect(plan).toMatchObject({ userCap: 0, speculate: false, chains: false, cap: 0, lateChains: false });
    expect(planner({ batchSizeCaps: caps }).plan(rows(2), emptyPlan())).toMatchObject({ userCap: 32, speculate: true });
  });

  it('plans nothing for a batch with no row that can draft', () => {
    const plan = planner().plan(rows(2, 'off'), emptyPlan());
    expect(plan).toMatchObject({ method: null, speculate: false, chains: false, cap: 0 });
  });

  it("judges a batch under its rows' most common method; only sssd rows chain", () => {
    const b = budget();
    const governor = new FixedGovernor(true);
    const mixed = [generation('pld'), generation('sssd'), generation('pld')];
    expect(planner({ budget: b, governor }).plan(mixed, emptyPlan())).toMatchObject({ method: 'pld', lateChains: false });
    // A wide batch of pld rows is put to the fused vote, never to the chains'.
    const wide = rows(GOVERNED_FROM_ROWS, 'pld');
    const plan = planner({ budget: b, governor: new FixedGovernor(false) }).plan(wide, emptyPlan());
    expect(plan).toMatchObject({ method: 'pld', speculate: false, chains: false });
  });

  it('puts fused trees to the vote past half the knee where there is no table to chain from (no datastore), and not below it', () => {
    const b = budget();
    const wide = Math.floor(b.kneeTokens / 2) + 1;
    const refusing = new FixedGovernor(false);
    // No datastore's table: unvoted, such a batch ran at 0.89-0.91x of plain decoding at concurrency 8.
    expect(planner({ budget: b, governor: refusing, chainTable: null }).plan(rows(wide), emptyPlan())).toMatchObject({ speculate: false, chains: false, cap: 0 });
    expect(refusing.asked).toEqual([`${wide} sssd`]);
    const narrower = new FixedGovernor(false);
    expect(planner({ budget: b, governor: narrower, chainTable: null }).plan(rows(wide - 1), emptyPlan())).toMatchObject({ speculate: true });
    expect(narrower.asked).toEqual([]);
    // pld rows (which never chain) likewise.
    const pld = new FixedGovernor(false);
    expect(planner({ budget: b, governor: pld }).plan(rows(wide, 'pld'), emptyPlan())).toMatchObject({ speculate: false, method: 'pld' });
    expect(pld.asked).toEqual([`${wide} pld`]);
  });

  it('reuses the plan object it is given', () => {
    const p = planner();
    const plan = emptyPlan();
    expect(p.plan(rows(1), plan)).toBe(plan);
    p.plan(rows(2, 'off'), plan);
    expect(plan).toMatchObject({ n: 2, method: null, speculate: false });
  });
});
