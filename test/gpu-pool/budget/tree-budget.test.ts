import { describe, expect, it } from 'vitest';
import { CostModel, type CostCoefficients, type CostSample } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget, type BudgetRow } from '../../../gpu-pool/budget/tree-budget';

const ZERO: CostCoefficients = { fixed: 0, perRow: 0, perPaddedToken: 0, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 };

function rowsWith(n: number, probs: number[], chain = 1): BudgetRow[] {
  const p = Float32Array.from([1, ...probs]);
  return Array.from({ length: n }, () => ({ chainLength: chain, available: probs.length, probs: p, scale: 1 }));
}

describe('cost model fit', () => {
  it('recovers the coefficients of an exact curve', () => {
    const truth = new CostModel({ ...ZERO, fixed: 0.3, perRow: 0.02, perPaddedToken: 0.015, perPastToken: 0.0001 });
    const samples: CostSample[] = [];
    for (const rows of [1, 4, 16, 64]) {
      for (const t of [1, 4, 16]) {
        for (const past of [32, 256]) samples.push({ rows, maxTokens: t, totalTokens: rows * t, maxPast: past, ms: truth.stepMs(rows, t, rows * t, past) });
      }
    }
    const fit = CostModel.fit(samples);
    for (const [rows, t, past] of [[1, 1, 100], [8, 8, 200], [64, 16, 50]]) {
      expect(fit.stepMs(rows, t, rows * t, past)).toBeCloseTo(truth.stepMs(rows, t, rows * t, past), 3);
    }
  });

  it('never makes more tokens look cheaper, even on noisy data', () => {
    const samples: CostSample[] = [];
    let seed = 1;
    const noise = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 0.4 + 0.8;
    for (const rows of [1, 4, 16]) for (const t of [1, 4, 16]) samples.push({ rows, maxTokens: t, totalTokens: rows * t, maxPast: 64, ms: (0.2 + 0.01 * rows * t) * noise() });
    const fit = CostModel.fit(samples);
    for (const v of Object.values(fit.coefficients)) expect(v).toBeGreaterThanOrEqual(0);
    expect(fit.stepMs(4, 8, 32, 64)).toBeGreaterThan(fit.stepMs(4, 4, 16, 64));
  });
});

describe('static budget (the SSSD authors’ rule)', () => {
  // I_knee = 193 tokens: base 1.92 ms, 0.01 ms per extra decode row.
  const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 1.91, perRow: 0.01 }), { policy: 'static', maxNodes: 32 });

  it('gives s = I_knee / batch from the menu of tree sizes', () => {
    expect(budget.kneeTokens).toBe(193);
    expect([1, 16, 32, 48, 64, 128, 256].map((b) => budget.staticSize(b))).toEqual([32, 12, 6, 4, 3, 1, 0]);
  });

  it('gives every request the same size, bounded by what it drafted', () => {
    const out = new Int32Array(2);
    budget.allocate([...rowsWith(1, new Array(40).fill(0.5)), ...rowsWith(1, [0.9, 0.8])], out);
    expect(Array.from(out)).toEqual([32, 2]);
  });
});

describe('marginal budget', () => {
  const opts = { policy: 'marginal' as const, maxNodes: 32 };

  it('speculates deep when extra tokens are nearly free (memory-bound step)', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 5, perPaddedToken: 0.001 }), opts);
    const out = new Int32Array(1);
    budget.allocate(rowsWith(1, Array.from({ length: 32 }, (_, i) => 0.9 ** (i + 1))), out);
    expect(out[0]).toBeGreaterThanOrEqual(24);
  });

  it('switches speculation off when tokens cost as much as steps', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 0.01, perPaddedToken: 1 }), opts);
    const out = new Int32Array(64);
    budget.allocate(rowsWith(64, [0.3, 0.1, 0.05]), out);
    expect(Array.from(out).every((v) => v === 0)).toBe(true);
  });

  it('shrinks trees as the batch grows', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 1, perRow: 0.01, perPaddedToken: 0.02 }), opts);
    const probs = Array.from({ length: 32 }, (_, i) => 0.85 ** (i + 1));
    const sizes = [1, 8, 32, 128].map((b) => {
      const out = new Int32Array(b);
      budget.allocate(rowsWith(b, probs), out);
      return out[0];
    });
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeLessThanOrEqual(sizes[i - 1]);
    expect(sizes[0]).toBeGreaterThan(sizes[3]);
  });

  it('speculates more when a prefill row already pads the batch', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 1, perRow: 0.01, perPaddedToken: 0.02 }), opts);
    const probs = Array.from({ length: 32 }, (_, i) => 0.6 ** (i + 1));
    const decode = new Int32Array(33);
    budget.allocate(rowsWith(33, probs), decode);
    const withPrefill = new Int32Array(33);
    budget.allocate([...rowsWith(32, probs), ...rowsWith(1, probs, 30)], withPrefill);
    expect(withPrefill[0]).toBeGreaterThan(decode[0]);
  });

  it("gives every row the same length: in a padded pass a doubtful row's nodes ride along with a sure row's", () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 1, perToken: 0.1 }), opts);
    const out = new Int32Array(2);
    const sure = Array.from({ length: 16 }, () => 0.95);
    const doubtful = Array.from({ length: 16 }, (_, i) => 0.05 * 0.5 ** i);
    budget.allocate([...rowsWith(1, sure), ...rowsWith(1, doubtful)], out);
    expect(out[0]).toBe(16);
    expect(out[1]).toBe(16);
    // Two doubtful rows alone do not pay for a longer pass.
    budget.allocate(rowsWith(2, doubtful), out);
    expect(Array.from(out)).toEqual([0, 0]);
  });

  it('drafts nothing for batches at or past the knee, where a decode step already fills the pass', () => {
    // knee = fixed / per-row token cost + 1 = 0.27 / 0.035 + 1 ≈ 9 (the 2-core CPU's curve)
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 0.27, perPaddedToken: 0.035 }), opts);
    const knee = budget.kneeTokens;
    expect(knee).toBeGreaterThan(4);
    expect(knee).toBeLessThan(16);
    for (let i = 0; i < 16; i++) {
      expect(budget.wantsDrafts(knee, 'sssd')).toBe(false);
      expect(budget.wantsDrafts(128, 'sssd')).toBe(false);
    }
    expect(budget.wantsDrafts(knee - 1, 'sssd')).toBe(true);
    // A GPU-like curve (tokens nearly free) keeps speculating at batch 128.
    const gpu = new TreeBudget(new CostModel({ ...ZERO, fixed: 5, perPaddedToken: 0.001 }), opts);
    expect(gpu.wantsDrafts(128, 'sssd')).toBe(true);
  });

  it('past a knee set by the cost of rows, still drafts where a second token per row is nearly free', () => {
    // The H100's WebGPU curve: each row's past is uploaded every step (knee ~106 rows),
    // while more tokens per row cost next to nothing.
    const h100 = new TreeBudget(
      new CostModel({ ...ZERO, fixed: 20.7, perTokenPair: 0.0000516, perPastToken: 0.0000478, perPastRow: 0.00151 }),
      opts,
    );
    expect(h100.kneeTokens).toBeGreaterThan(80);
    expect(h100.kneeTokens).toBeLessThan(128);
    expect(h100.secondTokenShare(128, 256)).toBeLessThan(0.05);
    expect(h100.wantsDrafts(128, 'sssd', 256)).toBe(true);
    // The 2-core CPU's curve: a second token per row costs 14-43% more there, so nothing past the knee drafts.
    const cpu = new TreeBudget(
      new CostModel({ ...ZERO, fixed: 0.213, perPaddedToken: 0.00012, perToken: 0.0162, perPastToken: 0.00000438, perPastRow: 0.000183 }),
      opts,
    );
    expect(cpu.kneeTokens).toBe(8);
    for (const batch of [8, 16, 32, 64, 128]) {
      for (const past of [32, 128, 256, 480]) {
        expect(cpu.secondTokenShare(batch, past)).toBeGreaterThan(0.1);
        expect(cpu.wantsDrafts(batch, 'sssd', past)).toBe(false);
      }
    }
    // Drafters are asked for at least 8 nodes where tokens are nearly free; the CPU keeps 2 × knee / batch, at least 4,
    // but a lone row may draft as many as any request may verify (a repeated request's history chain goes that deep).
    expect(h100.draftCap(128, 256)).toBe(8);
    expect([1, 2, 3, 4, 6, 7].map((batch) => cpu.draftCap(batch, 256))).toEqual([opts.maxNodes, 8, 6, 4, 4, 4]);
  });

  it('where the runner splits passes, batches up to twice the knee still draft; the runner is told what a pass costs', () => {
    // The 2-core CPU's fitted curve (cached calibration, 2026-11-26).
    const curve = new CostModel({ ...ZERO, fixed: 0.2245, perToken: 0.01391, perPastToken: 0.00000706, perPastRow: 0.000169 });
    // A pass's fixed cost over a slot's: ~15 padded tokens (measured on the runner: ~12).
    expect(curve.passOverheadTokens(128)).toBe(15);
    expect(new CostModel({ ...ZERO, fixed: 0.2, perToken: 0.02 }).passOverheadTokens()).toBe(10);
    expect(new CostModel({ ...ZERO, fixed: 0.2 }).passOverheadTokens()).toBe(Infinity);
    const split = new TreeBudget(curve, { ...opts, splitsPasses: true });
    const onePass = new TreeBudget(curve, opts);
    expect(split.kneeTokens).toBe(8);
    for (const batch of [8, 12, 15]) {
      expect(onePass.wantsDrafts(batch, 'sssd', 128)).toBe(false);
      expect(split.wantsDrafts(batch, 'sssd', 128)).toBe(true);
    }
    for (const batch of [16, 32, 128]) expect(split.wantsDrafts(batch, 'sssd', 128)).toBe(false);
  });

  it('gives nothing to requests without drafts', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 5, perPaddedToken: 0.001 }), opts);
    const out = new Int32Array(2);
    budget.allocate([{ chainLength: 1, available: 0, probs: null, scale: 1 }, ...rowsWith(1, [0.9, 0.9])], out);
    expect(out[0]).toBe(0);
    expect(out[1]).toBe(2);
  });
});

describe('drafting cost', () => {
  const opts = { policy: 'marginal' as const, maxNodes: 32 };
  // A plain row-step on the 2-core CPU's curve: ~0.3 ms at batch 1.
  const model = (): CostModel => new CostModel({ ...ZERO, fixed: 0.27, perPaddedToken: 0.035 });

  it('one stalled drafting step does not price rows out of drafting', () => {
    const budget = new TreeBudget(model(), opts);
    // The first steady step stalls (GC, page faults): 4 ms for one row, against 0.08 normally.
    budget.observeDraft(1, 4, 'sssd');
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(true);
    budget.observeDraft(1, 0.08, 'sssd');
    budget.observeDraft(1, 0.09, 'sssd');
    expect(budget.draftMsPerRow('sssd')).toBeCloseTo(0.09, 5);
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(true);
    budget.observeDraft(1, 0.085, 'sssd');
    budget.observeDraft(2, 8, 'sssd'); // another stall, 4 ms a row
    expect(budget.draftMsPerRow('sssd')).toBeCloseTo(0.09, 5);
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(true);
  });

  it('a drafting cost that stays high keeps rows that cannot pay for it from drafting', () => {
    const budget = new TreeBudget(model(), opts);
    for (let i = 0; i < 15; i++) budget.observeDraft(1, 2, 'sssd');
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(false);
    // Per method: another method's cost is its own.
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'pld')).toBe(true);
    // Cheap again: the median follows within half the window.
    for (let i = 0; i < 8; i++) budget.observeDraft(1, 0.05, 'sssd');
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(true);
  });

  it('a cold draft lowers an estimate it undercuts and never raises one', () => {
    const budget = new TreeBudget(model(), opts);
    // The first steady drafts ran before the JIT had compiled the drafters.
    for (let i = 0; i < 15; i++) budget.observeDraft(1, 1.7, 'sssd');
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(false);
    // Rows now draft only in probes, cold; a cold draft at 0.1 ms proves the steady cost lower.
    for (let i = 0; i < 8; i++) budget.observeDraft(1, 0.1, 'sssd', true);
    expect(budget.draftMsPerRow('sssd')).toBeCloseTo(0.1, 5);
    expect(budget.rowPaysForDrafting(1, 1.5, 128, 'sssd')).toBe(true);
    // Cold drafts dearer than the estimate say nothing about the steady cost.
    for (let i = 0; i < 15; i++) budget.observeDraft(1, 0.5, 'sssd', true);
    expect(budget.draftMsPerRow('sssd')).toBeCloseTo(0.1, 5);
    // Before the estimate exists, cold drafts do not make one.
    const fresh = new TreeBudget(model(), opts);
    for (let i = 0; i < 5; i++) fresh.observeDraft(1, 0.1, 'sssd', true);
    expect(fresh.draftMsPerRow('sssd')).toBeUndefined();
  });
});

describe("a row's sent tokens (rowPaysForDrafting)", () => {
  // The 2-core CPU's calibrated curve (2026-12-07): 0.42 ms a pass, 15 µs a token.
  const cpu = (): TreeBudget =>
    new TreeBudget(new CostModel({ ...ZERO, fixed: 0.425, perToken: 0.0149, perPastToken: 0.0000134, perPastRow: 0.00034 }), { policy: 'marginal', maxNodes: 32 });
  /** A row accepting `rate` of the `sent` tokens it sends a drafted step, drafting measured at 10 µs a row. */
  const pays = (budget: TreeBudget, batch: number, rate: number, sent: number): boolean => budget.rowPaysForDrafting(batch, rate * sent, 128, 'pld', sent);

  it("stops a lone row whose drafts are accepted at a few percent: `pld` on text that never repeats", () => {
    const budget = cpu();
    for (let i = 0; i < 3; i++) budget.observeDraft(1, 0.01, 'pld');
    // 3% of 9 tokens (random-word prompts at concurrency 1): cheap to draft, dear to send.
    expect(pays(budget, 1, 0.03, 9)).toBe(false);
    expect(budget.rowPaysForDrafting(1, 0.03 * 9, 128, 'pld')).toBe(true);
    // A probe's 1 of 4 pays again; so do rows as sssd's on dev-sessions, greedy (58-65%) and sampled (~25%).
    expect(pays(budget, 1, 0.25, 4)).toBe(true);
    expect(pays(budget, 1, 0.58, 16)).toBe(true);
    expect(pays(budget, 1, 0.25, 16)).toBe(true);
    // The tokens are priced as a lone row's, at any batch: fused trees run up to 5 rows, where a row at 20% still drafts
    // (the budget's padded pass prices its tokens there); at 3% it stops there too.
    expect(pays(budget, 5, 0.58, 8)).toBe(true);
    expect(pays(budget, 5, 0.2, 8)).toBe(true);
    expect(pays(budget, 5, 0.03, 8)).toBe(false);
    expect(pays(budget, 32, 0.03, 4)).toBe(false);
  });

  it('prices the sent tokens before the drafting time is measured; with none sent, an unmeasured method always drafts', () => {
    const budget = cpu();
    expect(pays(budget, 1, 0.03, 9)).toBe(false);
    expect(budget.rowPaysForDrafting(1, 0, 128, 'pld')).toBe(true);
  });

  it('the static policy prices nothing', () => {
    const budget = new TreeBudget(new CostModel({ ...ZERO, fixed: 0.425, perToken: 0.0149 }), { policy: 'static', maxNodes: 32 });
    expect(pays(budget, 1, 0, 9)).toBe(true);
  });
});

describe('the record of whether drafting pays (wantsDrafts)', () => {
  // Tokens priced one by one by the curve, 0.8 ms of drafting per drafted row.
  const curve = (): CostModel => new CostModel({ ...ZERO, fixed: 1, perToken: 0.05 });
  const sure = Float32Array.from([1, ...Array.from({ length: 8 }, () => 0.99)]);
  const drafting = (): BudgetRow => ({ chainLength: 1, available: 8, probs: sure, scale: 1 });
  const resting = (): BudgetRow => ({ chainLength: 1, available: 0, probs: null, scale: 1 });

  /** How many of 8 asks, after 30 steps of `rows`, let the batch draft (the first ask is always a probe). */
  function draftsAllowed(rows: BudgetRow[]): number {
    const budget = new TreeBudget(curve(), { policy: 'marginal', maxNodes: 32 });
    for (let i = 0; i < 3; i++) budget.observeDraft(1, 0.8, 'sssd');
    const out = new Int32Array(rows.length);
    for (let i = 0; i < 30; i++) budget.allocate(rows, out, 128, 'sssd');
    let allowed = 0;
    for (let i = 0; i < 8; i++) if (budget.wantsDrafts(rows.length, 'sssd', 128)) allowed++;
    return allowed;
  }

  it('prices the step as the padded pass it runs as: rows that rest pay for the drafting rows\' length', () => {
    // Every row drafts 8 sure nodes: worth its drafting.
    expect(draftsAllowed(Array.from({ length: 8 }, drafting))).toBe(8);
    // Half the rows rest, yet the pass is as long for them: 39.7 tokens in
    // 7.8 ms against 8 in 1.4 ms plain, a loss (priced per token, 6.2 ms, it
    // looked like a win). Only the probe drafts.
    expect(draftsAllowed([...Array.from({ length: 4 }, drafting), ...Array.from({ length: 4 }, resting)])).toBe(1);
  });
});

describe('one length for every row (allocateUniform)', () => {
  // The CPU's fit: tokens priced as if only real ones cost, a row ~ 3 tokens.
  const cpuLike = new CostModel({ ...ZERO, fixed: 0.4, perRow: 0.011, perToken: 0.017 });
  const budget = new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 64 });

  it('sizes chains by the likely rows and the unlikely ones alike, never trimming a row below the rest', () => {
    const sure = Float32Array.from([1, 0.95, 0.9, 0.85, 0.8]);
    const unsure = Float32Array.from([1, 0.2, 0.05, 0.02, 0.01]);
    const mixed: BudgetRow[] = Array.from({ length: 32 }, (_, r) => ({ chainLength: 1, available: 4, probs: r % 2 ? sure : unsure, scale: 1 }));
    const out = new Int32Array(32);
    const s = budget.allocateUniform(mixed, out, 128);
    expect(s).toBeGreaterThan(0);
    expect(new Set(out).size).toBe(1);
    expect(out[0]).toBe(s);
    // All sure rows take longer chains than the mixed batch; all unsure, shorter.
    const allSure = budget.allocateUniform(rowsWith(32, [0.95, 0.9, 0.85, 0.8]), out, 128);
    const allUnsure = budget.allocateUniform(rowsWith(32, [0.2, 0.05, 0.02, 0.01]), out, 128);
    expect(allSure).toBeGreaterThanOrEqual(s);
    expect(allUnsure).toBeLessThan(s);
  });

  it('drafts nothing where the drafts would not pay for their tokens', () => {
    const rows = rowsWith(32, [0.05, 0.01, 0.001]);
    const out = new Int32Array(32).fill(7);
    expect(budget.allocateUniform(rows, out, 128)).toBe(0);
    expect(Array.from(out)).toEqual(new Array(32).fill(0));
  });

  it('where the runner splits passes, a prompt row does not set the length of the decode rows; where it does not, their drafts ride along its padding', () => {
    const split = new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 64, splitsPasses: true });
    const probs = Array.from({ length: 32 }, (_, i) => 0.6 ** (i + 1));
    const out = new Int32Array(32);
    const decodeOnly = split.allocateUniform(rowsWith(32, probs), out, 128);
    const withPrompt = [...rowsWith(31, probs), ...rowsWith(1, probs, 40)];
    expect(split.allocateUniform(withPrompt, out, 128)).toBe(decodeOnly);
    expect(out[31]).toBe(decodeOnly);
    // One pass: 40 prompt tokens pad every row, so longer drafts cost nothing more.
    expect(budget.allocateUniform(withPrompt, out, 128)).toBeGreaterThan(decodeOnly);
    // A row with a shorter draft takes what it has.
    const short = [...rowsWith(31, probs), ...rowsWith(1, [0.9])];
    split.allocateUniform(short, out, 128);
    expect(out[31]).toBe(Math.min(1, decodeOnly));
  });
});
