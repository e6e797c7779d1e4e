/**
 * The batching loop with the real stories260K runner (in-process): one
 * forward pass per iteration for every active row, prefills joining the
 * running batch, caches released when generations leave.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { contextTriePool } from '../../../shared/drafting/trie-storage-pool';
import { MAX_PUSHED_TRIE_NODES, PREDICTION_TOKENS, STOP_MATCHER_VERSION, generateRequestSchema, type PoolEvent } from '../../../shared/protocol';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import type { SequenceKvCache } from '../../../gpu-pool/runtime/kv-cache';
import type { StepRow } from '../../../gpu-pool/runtime/step-types';
import type { BatchRunner } from '../../../gpu-pool/scheduler/batch-runner';
import { Scheduler, type SchedulerOptions } from '../../../gpu-pool/scheduler/scheduler';
import { CHAIN_METHOD, GOVERNED_FROM_ROWS } from '../../../gpu-pool/scheduler/step-plan';
import { CHAIN_NODES } from '../../../gpu-pool/scheduler/row-drafting';
import { CAP_PROBE_STEPS } from '../../../gpu-pool/scheduler/pass-recovery';
import { drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { CostModel } from '../../../gpu-pool/budget/cost-model';
import { TreeBudget, type BudgetRow } from '../../../gpu-pool/budget/tree-budget';
import { BatchSizeCaps } from '../../../gpu-pool/budget/batch-size-caps';
import { PoolMetrics } from '../../../gpu-pool/metrics/pool-metrics';
import type { FinishedGeneration } from '../../../gpu-pool/metrics/request-log';
import { SpeculationGovernor } from '../../../gpu-pool/budget/speculation-governor';
import { encodeEdgeTrie } from '../../../shared/drafting/edge-trie';
import { NextTokenTableBuilder, type NextTokenTable } from '../../../shared/drafting/next-token-table';
import { readFileSync } from 'node:fs';
import { ReferenceForward } from '../../../gpu-pool/model/reference-forward';
import { logSumExp } from '../../../gpu-pool/runtime/logprobs';
import { models } from '../../support/shared-data';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { PrefixCache } from '../../../gpu-pool/scheduler/prefix-cache';
import { TokenTexts } from '../../../gpu-pool/verify/token-texts';
import { REQUEST_MASK_BOUNDS } from '../../../gpu-pool/verify/text-masks';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../../../shared/tokenizer/tokenizer';
import { compileGrammar } from '../../../shared/structured/grammar-automaton';
import { stepHookedRunner } from '../../support/step-hooked-runner';
import { collect, tokensOf } from '../../support/collected-events';

/** The real runner, with a record of every step's row lengths and every cache's release. */
class RecordingRunner implements BatchRunner<SequenceKvCache> {
  steps: number[][] = [];
  created: SequenceKvCache[] = [];
  constructor(readonly inner: ModelRunner) {}
  get config() {
    return this.inner.config;
  }
  newSequence(capacity?: number): SequenceKvCache {
    const s = this.inner.newSequence(capacity);
    this.created.push(s);
    return s;
  }
  step(rows: ReadonlyArray<{ cache: SequenceKvCache; row: StepRow }>) {
    this.steps.push(rows.map((r) => r.row.tokens.length));
    return this.inner.step(rows);
  }
}

let runner: RecordingRunner;
beforeAll(async () => {
  runner = new RecordingRunner(await ModelRunner.create(await loadModel(models.stories260K.checkpoint)));
});

/** The shared runner, each step waiting `delayMs(step index)` first: a slow device, or one warming up. */
function delayedRunner(delayMs: (step: number) => number): BatchRunner<SequenceKvCache> {
  let steps = 0;
  return stepHookedRunner(
    runner,
    () => {
      const ms = delayMs(steps++);
      if (ms > 0) return new Promise((r) => setTimeout(r, ms));
    },
    runner.inner.keepsStepResults,
  );
}

/** A scheduler of one place, taken by a 400-token generation that has streamed `tokens` steps' tokens. */
async function fullWithOneLong(runner: BatchRunner<SequenceKvCache>, tokens: number): Promise<{ s: Scheduler<SequenceKvCache>; c: ReturnType<typeof collect> }> {
  const s = new Scheduler(runner, { limits: { maxActive: 1, maxQueued: 0, maxTotalTokens: 600 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
  const c = collect();
  s.submit(generateRequestSchema.parse({ id: 'long', promptIds: [1, 403], maxTokens: 400, speculation: 'off', sampling: { temperature: 1, seed: 1, logitBias: { '1': -100 } } }), c.sink);
  while (c.events.filter((e) => e.type === 'tokens').length < tokens) await new Promise((r) => setImmediate(r));
  return { s, c };
}

/** How a scheduler refuses one more request (null: it took it). */
function lateRefusal(s: Scheduler<SequenceKvCache>): { kind: string; message: string; retryAfterMs: number } | null {
  try {
    s.submit(generateRequestSchema.parse({ id: 'late', promptIds: [1], maxTokens: 4 }), collect().sink);
  } catch (err) {
    return err as { kind: string; message: string; retryAfterMs: number };
  }
  return null;
}

/** Story `line` of the greedy fixtures: its prompt and output ids. */
function fixtureStory(line: number): { prompt_ids: number[]; output_ids: number[] } {
  return JSON.parse(readFileSync(models.stories260K.fixtures, 'utf8').split('\n')[line]) as { prompt_ids: number[]; output_ids: number[] };
}

/** What plain decoding emits for a prompt, alone on a scheduler of its own. */
async function plainIds(promptIds: number[], maxTokens: number): Promise<number[]> {
  const c = collect();
  scheduler(null).submit(generateRequestSchema.parse({ id: 'plain-reference', promptIds, maxTokens, speculation: 'off' }), c.sink);
  return tokensOf(await c.done);
}

const cost = new CostModel({ fixed: 1, perRow: 0.01, perPaddedToken: 0.01, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });

/** A governor that refuses speculation and records the batch sizes it was asked about. */
class RefusingGovernor extends SpeculationGovernor {
  readonly asked: number[] = [];
  override decide(batch: number): boolean {
    this.asked.push(batch);
    return false;
  }
}

/** A budget that keeps every drafting cost the scheduler reports to it. */
class RecordingBudget extends TreeBudget {
  readonly drafts: { rows: number; ms: number; method: string; cold: boolean }[] = [];
  override observeDraft(rows: number, ms: number, method = 'default', cold = false): void {
    this.drafts.push({ rows, ms, method, cold });
    super.observeDraft(rows, ms, method, cold);
  }
}

const STORY = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317];
/** A story told twice and a half: the context drafter has continuations for it. */
const REPEATING_PROMPT = [...STORY, ...STORY.slice(1), ...STORY.slice(1, 8)];

/** A scheduler of up to 32 rows over the real runner, with this pass cost and governor. */
function wideScheduler(passCost: CostModel, governor: SpeculationGovernor): Scheduler<SequenceKvCache> {
  return new Scheduler(runner, {
    limits: { maxActive: 32, maxQueued: 32, maxTotalTokens: 1_000_000 },
    budget: new TreeBudget(passCost, { policy: 'marginal', maxNodes: 16 }),
    governor,
    metrics: new PoolMetrics(),
    createDrafter: drafterFactory(null),
  });
}

/** Submits a 'context' request for the repeating prompt; resolves with its `done` event. */
function runContext(s: Scheduler<SequenceKvCache>, id: string, maxTokens: number): Promise<Extract<PoolEvent, { type: 'done' }>> {
  const c = collect();
  s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens, speculation: 'context' }), c.sink);
  return c.done.then((events) => events.at(-1) as Extract<PoolEvent, { type: 'done' }>);
}

/** A GPU-like pass: a fixed cost that dwarfs what rows and tokens add. */
const gpuLike = new CostModel({ fixed: 5, perRow: 0.01, perPaddedToken: 0.01, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });

/** A scheduler of up to 8 rows that feeds at most `prefillChunk` prompt tokens a step (chunked prefill). */
function chunkedScheduler(prefillChunk: number, budget: TreeBudget | null = new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 })): Scheduler<SequenceKvCache> {
  return new Scheduler(runner, {
    limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
    budget,
    metrics: new PoolMetrics(),
    maxTreeNodes: 16,
    createDrafter: drafterFactory(null),
    prefillChunk,
  });
}

/**
 * The real runner, failing as onnxruntime would where `fault` throws for a
 * pass's rows; `keepsStepResults` as host (true) or device-resident (false)
 * keys/values.
 */
function failingRunner(keepsStepResults: boolean, fault: (rows: ReadonlyArray<{ cache: SequenceKvCache; row: StepRow }>) => void): BatchRunner<SequenceKvCache> {
  return stepHookedRunner(runner, fault, keepsStepResults);
}

/** sssd_pool_pass_failures_total by result. */
/** The pass-failure counts that happened (every series exists from the start at 0). */
async function passFailureCounts(metrics: PoolMetrics): Promise<Record<string, number>> {
  return Object.fromEntries((await metrics.passFailures.get()).values.filter((v) => v.value > 0).map((v) => [String(v.labels.result), v.value]));
}

/** A scheduler over the real runner: 8 rows, 8 queued and 100,000 tokens unless `options` says otherwise. */
function scheduler(budget: TreeBudget | null, metrics = new PoolMetrics(), options: Partial<SchedulerOptions<SequenceKvCache>> = {}): Scheduler<SequenceKvCache> {
  return new Scheduler(runner, {
    limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
    budget,
    metrics,
    createDrafter: drafterFactory(null),
    ...options,
  });
}

/**
 * A generation of REPEATING_PROMPT with `extra` fields (a structured output's), and `predictionIds` to draft from:
 * its ids, its text without the end token, how it finished and how many tokens were drafted.
 */
async function textRun(s: Scheduler<SequenceKvCache>, tokenizer: Tokenizer, maxTokens: number, id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) {
  const eos = runner.config.eosIds[0];
  const c = collect();
  s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens, speculation, ...extra, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
  const events = await c.done;
  const ids = tokensOf(events);
  return { ids, text: tokenizer.decode(ids.filter((t) => t !== eos)), finishReason: (events.at(-1) as { finishReason?: unknown }).finishReason, drafted: events.reduce((n, e) => n + (e.type === 'tokens' ? e.drafted : 0), 0) };
}

describe('continuous batching', () => {
  it('applies repetition, frequency and presence penalties, and drafted steps emit exactly what plain decoding does under them', async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const run = async (id: string, speculation: 'off' | 'context' | 'sssd', sampling: Record<string, unknown>, predictionIds?: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 48, speculation, sampling, predictionIds }), c.sink);
      const tokens = (await c.done).filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
      return { ids: tokens.flatMap((e) => e.ids), accepted: tokens.reduce((n, e) => n + e.accepted, 0) };
    };
    const unpenalised = await run('pen-none', 'off', {});
    for (const [name, sampling] of [
      ['frequency', { frequencyPenalty: 1.5 }],
      ['presence', { presencePenalty: 1.2 }],
      ['repetition', { repetitionPenalty: 1.15 }],
      ['all, sampled', { temperature: 0.8, seed: 11, frequencyPenalty: 0.6, presencePenalty: 0.4, repetitionPenalty: 1.3 }],
      ['min-p, sampled', { temperature: 1.2, seed: 5, minP: 0.2 }],
      // The unpenalised text's first token banned.
      ['bias', { logitBias: { [String(unpenalised.ids[0])]: -100 } }],
    ] as const) {
      const plain = await run(`pen-off-${name.replace(/\W+/g, '-')}`, 'off', sampling);
      const drafted = await run(`pen-ctx-${name.replace(/\W+/g, '-')}`, 'context', sampling);
      expect(drafted.ids, name).toEqual(plain.ids);
      expect(drafted.accepted, name).toBeGreaterThan(0);
      // The output itself as the prediction: long accepted paths, a token often twice on one, and every node
      // deeper than the first sees the penalties of the path's tokens above it.
      const predicted = await run(`pen-pred-${name.replace(/\W+/g, '-')}`, 'sssd', sampling, plain.ids);
      expect(predicted.ids, name).toEqual(plain.ids);
      expect(predicted.accepted, name).toBeGreaterThan(plain.ids.length / 2);
      // The penalty changed the text (a strong frequency penalty: it repeats itself less).
      if (!('temperature' in sampling)) expect(plain.ids, name).not.toEqual(unpenalised.ids);
      if (name === 'frequency') expect(new Set(plain.ids).size).toBeGreaterThan(new Set(unpenalised.ids).size);
      if (name === 'bias') expect(plain.ids).not.toContain(unpenalised.ids[0]);
    }
  });

  it('resumes a generation from its earlier output as the one it would have been, penalties and seeded sampling included', async () => {
    const metrics = new PoolMetrics();
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), metrics);
    const run = async (id: string, promptIds: number[], maxTokens: number, sampling: Record<string, unknown>, resumedOutputTokens?: number) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds, maxTokens, speculation: 'context', sampling, resumedOutputTokens }), c.sink);
      return (await c.done).flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    };
    for (const [name, sampling] of [
      ['frequency', { frequencyPenalty: 1.5 }],
      ['presence, sampled', { temperature: 0.9, seed: 5, presencePenalty: 1.2 }],
    ] as const) {
      const whole = await run(`whole-${name.replace(/\W+/g, '-')}`, REPEATING_PROMPT, 48, sampling);
      expect(whole).toHaveLength(48);
      const cut = 17;
      const rest = await run(`resumed-${name.replace(/\W+/g, '-')}`, [...REPEATING_PROMPT, ...whole.slice(0, cut)], 48 - cut, sampling, cut);
      expect(rest, name).toEqual(whole.slice(cut));
      // Without saying which tokens were output, the penalties count them as prompt: another text.
      const naive = await run(`naive-${name.replace(/\W+/g, '-')}`, [...REPEATING_PROMPT, ...whole.slice(0, cut)], 48 - cut, sampling);
      expect(naive, name).not.toEqual(whole.slice(cut));
    }
    const c = collect();
    expect(() => s.submit(generateRequestSchema.parse({ id: 'resumed-too-many', promptIds: [1, 2], maxTokens: 4, resumedOutputTokens: 2 }), c.sink)).toThrow(/resumedOutputTokens/);
    // Counted where operators look: two generations came in resumed, with 17 tokens each.
    expect((await metrics.resumedGenerations.get()).values[0].value).toBe(2);
    expect((await metrics.resumedOutputTokens.get()).values[0].value).toBe(34);
  });

  it("reports each emitted token's log-probability under the model, the same whether it was drafted or decoded plainly", async () => {
    const model = await loadModel(models.stories260K.checkpoint);
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const run = async (id: string, speculation: 'off' | 'context', logprobs: number) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 40, speculation, logprobs }), c.sink);
      const tokens = (await c.done).filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
      return {
        ids: tokens.flatMap((e) => e.ids),
        lps: tokens.flatMap((e) => e.logprobs ?? []),
        tops: tokens.flatMap((e) => e.topLogprobs ?? []),
        drafted: tokens.reduce((n, e) => n + e.accepted, 0),
      };
    };
    const plain = await run('lp-off', 'off', 3);
    const drafted = await run('lp-context', 'context', 3);
    // The repeating prompt drafts well: most tokens came out of accepted drafts.
    expect(drafted.drafted).toBeGreaterThan(10);
    expect(drafted.ids).toEqual(plain.ids);
    expect(plain.lps).toHaveLength(40);
    expect(drafted.lps).toHaveLength(40);
    for (let i = 0; i < 40; i++) {
      expect(drafted.lps[i]).toBeCloseTo(plain.lps[i], 3);
      expect(plain.lps[i]).toBeLessThanOrEqual(0);
      // Greedy: the emitted token is the most likely one, listed first with its own log-probability.
      expect(plain.tops[i]).toHaveLength(3);
      expect(plain.tops[i][0][0]).toBe(plain.ids[i]);
      expect(plain.tops[i][0][1]).toBeCloseTo(plain.lps[i], 6);
      expect(plain.tops[i][1][1]).toBeLessThanOrEqual(plain.tops[i][0][1]);
    }
    // Against the plain TypeScript forward pass, token by token.
    const ref = new ReferenceForward(model.config, model.weights);
    let logits: Float32Array = new Float32Array(0);
    for (const t of REPEATING_PROMPT) logits = ref.forward(t);
    for (let i = 0; i < 8; i++) {
      expect(plain.lps[i]).toBeCloseTo(logits[plain.ids[i]] - logSumExp(logits), 3);
      logits = ref.forward(plain.ids[i]);
    }
    // The prompt scored: token i given tokens 0..i-1, as the reference forward pass gives it; maxTokens 0 = nothing generated.
    const scored = collect();
    s.submit(generateRequestSchema.parse({ id: 'lp-prompt', promptIds: REPEATING_PROMPT, maxTokens: 0, promptLogprobs: 2 }), scored.sink);
    const scoredEvents = await scored.done;
    const promptLps = scoredEvents.find((e): e is Extract<PoolEvent, { type: 'prompt-logprobs' }> => e.type === 'prompt-logprobs')!;
    expect(promptLps.logprobs).toHaveLength(REPEATING_PROMPT.length - 1);
    expect(promptLps.topLogprobs!.every((t) => t.length === 2)).toBe(true);
    expect(scoredEvents.some((e) => e.type === 'tokens')).toBe(false);
    expect(scoredEvents.at(-1)).toMatchObject({ type: 'done', finishReason: 'length', usage: { completionTokens: 0 } });
    const scorer = new ReferenceForward(model.config, model.weights);
    for (let i = 1; i < 10; i++) {
      const l = scorer.forward(REPEATING_PROMPT[i - 1]);
      expect(promptLps.logprobs[i - 1]).toBeCloseTo(l[REPEATING_PROMPT[i]] - logSumExp(l), 3);
      // Its rank in the whole vocabulary, as vLLM's: the tokens at least as likely, itself included.
      expect(promptLps.ranks![i - 1]).toBe(l.filter((x) => x >= l[REPEATING_PROMPT[i]]).length);
    }
    expect(promptLps.ranks).toHaveLength(REPEATING_PROMPT.length - 1);
    // logprobs 0: only the emitted tokens' own; not asked: none at all.
    const own = await run('lp-own', 'off', 0);
    expect(own.lps).toHaveLength(40);
    expect(own.tops).toHaveLength(0);
    const c = collect();
    s.submit(generateRequestSchema.parse({ id: 'lp-none', promptIds: [1], maxTokens: 3 }), c.sink);
    for (const e of await c.done) if (e.type === 'tokens') expect(e.logprobs).toBeUndefined();
  });

  it("reports the listed ids' log-probabilities (logprobIds) at every emitted token instead of the most likely ones, from the model's own distribution, the same with speculation and without", async () => {
    const model = await loadModel(models.stories260K.checkpoint);
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    // Unlikely ids among them (the end token, a byte piece), outside any top-k; a repeat kept where it is.
    const listed = [2, 300, 7, 300, 511];
    const run = async (id: string, speculation: 'off' | 'sssd') => {
      const c = collect();
      // Sampled and penalised: the listed ids' log-probabilities are still the raw model's (temperature 1, before masks), as vLLM's raw_logprobs.
      const sampling = { temperature: 0.8, seed: 4, repetitionPenalty: 1.2, logitBias: { '300': -100 } };
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 32, speculation, sampling, logprobs: 2, logprobIds: listed }), c.sink);
      const tokens = (await c.done).filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
      return { ids: tokens.flatMap((e) => e.ids), lps: tokens.flatMap((e) => e.logprobs ?? []), tops: tokens.flatMap((e) => e.topLogprobs ?? []), accepted: tokens.reduce((n, e) => n + e.accepted, 0) };
    };
    const plain = await run('lpids-off', 'off');
    const drafted = await run('lpids-sssd', 'sssd');
    expect(drafted.accepted).toBeGreaterThan(0);
    expect(drafted.ids).toEqual(plain.ids);
    expect(plain.tops).toHaveLength(plain.ids.length);
    expect(drafted.tops).toHaveLength(plain.ids.length);
    const ref = new ReferenceForward(model.config, model.weights);
    let logits: Float32Array = new Float32Array(0);
    for (const t of REPEATING_PROMPT) logits = ref.forward(t);
    for (let i = 0; i < plain.ids.length; i++) {
      const lse = logSumExp(logits);
      // The listed ids, in their order, each with its log-probability under the full distribution.
      expect(plain.tops[i].map(([id]) => id)).toEqual(listed);
      expect(drafted.tops[i].map(([id]) => id)).toEqual(listed);
      listed.forEach((id, j) => {
        expect(plain.tops[i][j][1], `token ${i}, id ${id}`).toBeCloseTo(logits[id] - lse, 3);
        expect(drafted.tops[i][j][1], `token ${i}, id ${id}, drafted`).toBeCloseTo(plain.tops[i][j][1], 4);
      });
      expect(plain.lps[i]).toBeCloseTo(logits[plain.ids[i]] - lse, 3);
      logits = ref.forward(plain.ids[i]);
    }
    // An id outside the vocabulary is refused by name before anything runs.
    expect(() => s.submit(generateRequestSchema.parse({ id: 'lpids-bad', promptIds: [1], maxTokens: 2, logprobs: 0, logprobIds: [3, 512] }), collect().sink)).toThrow(/logprobIds\[1\] = 512 is outside the vocabulary/);
  });

  it('drains: refuses new generations as busy, lets the running and queued ones finish, then resolves', async () => {
    const metrics = new PoolMetrics();
    const s = new Scheduler(runner, {
      limits: { maxActive: 1, maxQueued: 4, maxTotalTokens: 100_000 },
      budget: null,
      metrics,
      createDrafter: drafterFactory(null),
    });
    const running = collect();
    const queued = collect();
    s.submit(generateRequestSchema.parse({ id: 'running', promptIds: [1], maxTokens: 30, speculation: 'off' }), running.sink);
    s.submit(generateRequestSchema.parse({ id: 'queued', promptIds: [1, 403], maxTokens: 20, speculation: 'off' }), queued.sink);
    while (running.events.filter((e) => e.type === 'tokens').length < 3) await new Promise((r) => setImmediate(r));
    expect(s.stats()).toMatchObject({ active: 1, queued: 1 });
    const drained = s.drain();
    expect(s.isDraining).toBe(true);
    expect(() => s.submit(generateRequestSchema.parse({ id: 'late', promptIds: [1], maxTokens: 5 }), collect().sink)).toThrow(
      expect.objectContaining({ name: 'AdmissionError', kind: 'busy', retryAfterMs: expect.any(Number) }),
    );
    await drained;
    // Both ended as they would have without the drain, every token sent.
    for (const [c, n] of [[running, 30], [queued, 20]] as const) {
      const events = await c.done;
      expect(events.flatMap((e) => (e.type === 'tokens' ? e.ids : []))).toHaveLength(n);
      expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    }
    expect(s.stats()).toMatchObject({ active: 0, queued: 0, reservedTokens: 0 });
    // Idle already: a second drain resolves at once.
    await s.drain();
    // Refused while draining and once closed, each counted.
    await s.close();
    expect(() => s.submit(generateRequestSchema.parse({ id: 'later', promptIds: [1], maxTokens: 5 }), collect().sink)).toThrow(expect.objectContaining({ kind: 'busy' }));
    expect((await metrics.rejected.get()).values.find((v) => v.labels.reason === 'draining')?.value).toBe(2);
  });

  it("ends a generation the edge stopped at a stop string as 'stop', and one stopped before it had any output as cancelled", async () => {
    const metrics = new PoolMetrics();
    const s = scheduler(null, metrics, { limits: { maxActive: 1, maxQueued: 4, maxTotalTokens: 100_000 } });
    const running = collect();
    const queued = collect();
    s.submit(generateRequestSchema.parse({ id: 'running', promptIds: [1], maxTokens: 200, speculation: 'off' }), running.sink);
    s.submit(generateRequestSchema.parse({ id: 'queued', promptIds: [1, 403], maxTokens: 20, speculation: 'off' }), queued.sink);
    while (running.events.filter((e) => e.type === 'tokens').length < 3) await new Promise((r) => setImmediate(r));
    expect(s.cancel('queued', true)).toBe(true);
    expect(s.cancel('running', true)).toBe(true);
    expect((await queued.done).at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    expect((await running.done).at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
    const reasons = Object.fromEntries((await metrics.requestsByReason.get()).values.map((v) => [v.labels.finished_reason, v.value]));
    expect(reasons).toMatchObject({ stop: 1, abort: 1 });
  });

  it('gives the datastore the outputs of generations that opted in and finished (at the end token, a stop string or max tokens), not cut-off ones', async () => {
    const contributed: number[][] = [];
    const s = scheduler(null, new PoolMetrics(), { onContribute: (tokens) => contributed.push(Array.from(tokens)) });
    /** `cancelAfter`: the edge cancels it once it has that many tokens, at a stop string it found or not. */
    const run = async (id: string, extra: Record<string, unknown>, cancelAfter?: { tokens: number; atStop: boolean }): Promise<{ ids: number[]; finishReason: unknown }> => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: [1, 403, 407], maxTokens: 30, speculation: 'off', contributeToDatastore: true, ...extra }), c.sink);
      if (cancelAfter) {
        while (tokensOf(c.events).length < cancelAfter.tokens) await new Promise((r) => setImmediate(r));
        s.cancel(id, cancelAfter.atStop);
      }
      const events = await c.done;
      return { ids: tokensOf(events), finishReason: (events.at(-1) as { finishReason?: unknown }).finishReason };
    };
    // The end token forced at once.
    const atEos = await run('at-eos', { sampling: { logitBias: { [String(runner.config.eosIds[0])]: 100 } } });
    expect(atEos.finishReason).toBe('stop');
    const atStop = await run('at-stop-string', {}, { tokens: 3, atStop: true });
    expect(atStop.finishReason).toBe('stop');
    const atLength = await run('at-length', { maxTokens: 5 });
    expect(atLength.finishReason).toBe('length');
    const cutOff = await run('cut-off', {}, { tokens: 2, atStop: false });
    expect(cutOff.finishReason).toBe('cancelled');
    expect(contributed).toEqual([[1, 403, 407, ...atEos.ids], [1, 403, 407, ...atStop.ids], [1, 403, 407, ...atLength.ids]]);
  });

  it("a stream that throws as it starts costs that generation alone: the one beside it runs on", async () => {
    const s = scheduler(null);
    const running = collect();
    s.submit(generateRequestSchema.parse({ id: 'runs-on', promptIds: [1, 403], maxTokens: 40, speculation: 'off' }), running.sink);
    while (tokensOf(running.events).length < 2) await new Promise((r) => setImmediate(r));
    const broken = collect();
    const sink = {
      send: (e: PoolEvent): void => {
        if (e.type === 'start') throw new Error('socket gone');
        broken.sink.send(e);
      },
      end: (): void => broken.sink.end(),
    };
    s.submit(generateRequestSchema.parse({ id: 'breaks', promptIds: [1, 407], maxTokens: 4, speculation: 'off' }), sink);
    expect((await broken.done).at(-1)).toMatchObject({ type: 'error', message: expect.stringContaining('could not start the stream') });
    const beside = await running.done;
    expect(beside.at(-1)).toMatchObject({ type: 'done' });
    expect(tokensOf(beside)).toHaveLength(40);
  });

  it('a datastore that cannot take an output (it throws) costs that output alone: the generations beside it run on', async () => {
    const s = scheduler(null, new PoolMetrics(), {
      onContribute: () => {
        throw new RangeError('Array buffer allocation failed');
      },
    });
    const running = collect();
    s.submit(generateRequestSchema.parse({ id: 'beside', promptIds: [1, 403], maxTokens: 40, speculation: 'off' }), running.sink);
    while (tokensOf(running.events).length < 2) await new Promise((r) => setImmediate(r));
    const contributing = collect();
    s.submit(generateRequestSchema.parse({ id: 'contributes', promptIds: [1, 407], maxTokens: 4, speculation: 'off', contributeToDatastore: true }), contributing.sink);
    expect((await contributing.done).at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    const beside = await running.done;
    expect(beside.at(-1)).toMatchObject({ type: 'done' });
    expect(tokensOf(beside).length).toBeGreaterThan(4);
  });

  it("never emits a bad word (vLLM's bad_words), one token or several, with speculation as without", async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const run = async (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 40, speculation, ignoreEos: true, ...extra, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
      const events = await c.done;
      return { ids: tokensOf(events), finishReason: (events.at(-1) as { finishReason?: unknown }).finishReason };
    };
    /** The same with speculation off and with `sssd` drafting from the free output (its drafts hold the banned words). */
    const both = async (name: string, extra: Record<string, unknown>, drafts: number[]) => {
      const plain = await run(`${name}-off`, 'off', extra);
      const drafted = await run(`${name}-sssd`, 'sssd', extra, drafts);
      expect(drafted, name).toEqual(plain);
      return plain.ids;
    };
    const holds = (ids: number[], word: number[]) => ids.some((_, i) => word.every((t, j) => ids[i + j] === t));
    const free = (await run('free', 'off', {})).ids;
    // A word of the free output's tokens 5..7 (it repeats: drafts from it would write it again).
    const word = free.slice(5, 8);
    expect(holds(free, word)).toBe(true);
    const banned = await both('three-tokens', { badWords: [word] }, free);
    expect(banned.slice(0, 7)).toEqual(free.slice(0, 7));
    expect(holds(banned, word)).toBe(false);
    // A one-token word: never emitted.
    const single = await both('one-token', { badWords: [[free[3]]] }, free);
    expect(single).not.toContain(free[3]);
    // Both, with penalties beside them.
    const mixed = await both('with-penalty', { badWords: [word, [free[3]]], sampling: { presencePenalty: 0.5 } }, free);
    expect(holds(mixed, word) || mixed.includes(free[3])).toBe(false);
    // A bad word's id outside the vocabulary is refused at the door.
    expect(() => s.submit(generateRequestSchema.parse({ id: 'bad-past', promptIds: [1], maxTokens: 4, badWords: [[2], [3, runner.config.vocabSize]] }), collect().sink)).toThrow(
      expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('badWords[1][1]') }),
    );
  });

  it("writes one of the choices (vLLM's structured_outputs.choice), greedy and seeded sampled, with speculation as without", async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer) });
    const eos = runner.config.eosIds[0];
    const run = (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => textRun(s, tokenizer, 60, id, speculation, extra, predictionIds);
    const free = await run('choice-free', 'off', { ignoreEos: true });
    // Choices the model's own words start (drafts from its free output run along them), one a prefix of another, one it would not write.
    const own = tokenizer.decode(free.ids.slice(0, 24));
    const choices = [own, own.slice(0, 20), `${own.slice(0, 12)} and the big red ball`, ' Lily was happy'];
    /** The same with speculation off and with `sssd` drafting from the free output; the text one of the choices. */
    const both = async (name: string, extra: Record<string, unknown>) => {
      const plain = await run(`${name}-off`, 'off', extra);
      const drafted = await run(`${name}-sssd`, 'sssd', extra, free.ids);
      expect(drafted.drafted, name).toBeGreaterThan(0);
      expect({ ...drafted, drafted: 0 }, name).toEqual({ ...plain, drafted: 0 });
      return plain;
    };
    const greedy = await both('choice-greedy', { choices });
    expect(greedy.finishReason).toBe('stop');
    expect(greedy.ids.at(-1)).toBe(eos);
    expect(choices).toContain(greedy.text);
    for (const seed of [3, 11, 64]) {
      const sampled = await both(`choice-sampled-${seed}`, { choices, sampling: { temperature: 1, seed } });
      expect(sampled.finishReason).toBe('stop');
      expect(choices).toContain(sampled.text);
    }
    // Cut by maxTokens: a start of a choice, finish 'length'.
    const cut = await both('choice-cut', { choices, maxTokens: 3 });
    expect(cut.finishReason).toBe('length');
    expect(choices.some((c) => c.startsWith(cut.text))).toBe(true);
    // With penalties and min_tokens beside them.
    const penalised = await both('choice-penalised', { choices, minTokens: 2, sampling: { presencePenalty: 1.5, repetitionPenalty: 1.3 } });
    expect(choices).toContain(penalised.text);
    // A stop token id is no way out of a whole choice: the token the model writes next after it, named a stop id, is
    // masked there as any other, and the model's end token ends it (as vLLM's grammar ends only at the end token).
    const after = free.ids[24];
    expect(after).not.toBe(eos);
    const stopped = await both('choice-stop-id', { choices, stopTokenIds: [after] });
    expect(stopped.text).toBe(own);
    expect(stopped.ids.at(-1)).toBe(eos);
  });

  it('refuses choices its other masks leave nothing to start with, or a pool with no tokenizer to follow', async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const s = scheduler(null, new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer) });
    let n = 0;
    const refused = (extra: Record<string, unknown>, target = s) => () => target.submit(generateRequestSchema.parse({ id: `choice-none-${n++}`, promptIds: [1, 403], maxTokens: 4, ...extra }), collect().sink);
    const yes = tokenizer.encode('yes', { bos: false });
    // Only the masks it sent are named (choices were told of badWords and minTokens they never set).
    expect(refused({ choices: ['yes'], allowedTokenIds: [7] })).toThrow(expect.objectContaining({
      kind: 'bad_request',
      message: "choices leave no token to generate next once allowedTokenIds applies, or none of the tokenizer's tokens prints what the choices need next",
    }));
    expect(refused({ choices: ['yes'], allowedTokenIds: [7], badWords: [[8]], minTokens: 2 })).toThrow(expect.objectContaining({
      message: "choices leave no token to generate next once allowedTokenIds, badWords and minTokens (the end ids held back) apply, or none of the tokenizer's tokens prints what the choices need next",
    }));
    // A one-token bad word leaves the text's other ways in (its bytes): admitted, and written without it.
    const taken = collect();
    s.submit(generateRequestSchema.parse({ id: 'choice-banned-way', promptIds: [1, 403], maxTokens: 8, choices: ['yes'], badWords: [[yes[0]]] }), taken.sink);
    const ids = tokensOf(await taken.done);
    expect(ids).not.toContain(yes[0]);
    expect(tokenizer.decode(ids)).toBe('yes');
    // The resumed output is no start of a choice.
    expect(refused({ choices: ['yes'], promptIds: [1, 403, 404], resumedOutputTokens: 1 })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('start of no choice') }));
    expect(refused({ choices: ['yes'] }, scheduler(null))).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('no tokenizer') }));
    expect(refused({ choices: ['yes'], ignoreEos: true })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('choices with ignoreEos') }));
  });

  it('goes on from the text a resumed generation had written: the rest of the same choice', async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const s = scheduler(null, new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer) });
    const eos = runner.config.eosIds[0];
    const choices = [' Tim and Sam went to the park', ' Tim was sad'];
    const whole = collect();
    s.submit(generateRequestSchema.parse({ id: 'choice-whole', promptIds: STORY, maxTokens: 40, speculation: 'off', choices }), whole.sink);
    const ids = tokensOf(await whole.done);
    expect(choices).toContain(tokenizer.decode(ids.filter((t) => t !== eos)));
    // Resumed after its first 3 tokens (at the prompt's end, as the edge sends them): the same rest.
    const resumed = collect();
    s.submit(generateRequestSchema.parse({ id: 'choice-resumed', promptIds: [...STORY, ...ids.slice(0, 3)], resumedOutputTokens: 3, maxTokens: 37, speculation: 'off', choices }), resumed.sink);
    expect(tokensOf(await resumed.done)).toEqual(ids.slice(3));
    // Resumed with the choice written whole and min_tokens still to go: min_tokens yields to the choice's end (admitted,
    // and the end token is all it generates), rather than a generation left with no token.
    const written = ids.filter((t) => t !== eos);
    const done = collect();
    s.submit(generateRequestSchema.parse({ id: 'choice-done', promptIds: [...STORY, ...written], resumedOutputTokens: written.length, maxTokens: 8, minTokens: written.length + 4, speculation: 'off', choices }), done.sink);
    const ended = await done.done;
    expect(tokensOf(ended)).toEqual([eos]);
  });

  it("matches a regex whole (vLLM's structured_outputs.regex; JSON schemas become one at the edge), greedy and seeded sampled, with speculation as without", async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const metrics = new PoolMetrics();
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), metrics, { tokenTexts: TokenTexts.of(tokenizer) });
    const eos = runner.config.eosIds[0];
    const run = (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => textRun(s, tokenizer, 80, id, speculation, extra, predictionIds);
    const free = await run('regex-free', 'off', { ignoreEos: true });
    const own = tokenizer.decode(free.ids.slice(0, 10));
    const escaped = own.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const both = async (name: string, extra: Record<string, unknown>) => {
      const plain = await run(`${name}-off`, 'off', extra);
      const drafted = await run(`${name}-sssd`, 'sssd', extra, free.ids);
      expect(drafted.drafted, name).toBeGreaterThan(0);
      expect({ ...drafted, drafted: 0 }, name).toEqual({ ...plain, drafted: 0 });
      return plain;
    };
    // The model's own words, then lower-case words to a full stop; and a JSON object of a name and an age.
    const patterns = [`${escaped}[a-z ,]{0,60}\\.`, '\\{"name": "[A-Z][a-z]{1,10}", "age": (0|[1-9][0-9]?)\\}'];
    for (const regex of patterns) {
      const whole = new RegExp(`^(?:${regex})$`, 'u');
      const greedy = await both(`regex-greedy-${regex.length}`, { regex });
      expect(greedy.finishReason).toBe('stop');
      expect(greedy.ids.at(-1)).toBe(eos);
      expect(greedy.text).toMatch(whole);
      for (const seed of [3, 11]) {
        const sampled = await both(`regex-sampled-${regex.length}-${seed}`, { regex, sampling: { temperature: 1, seed } });
        if (sampled.finishReason === 'stop') expect(sampled.text).toMatch(whole);
      }
    }
    const json = await run('regex-json', 'sssd', { regex: patterns[1] }, free.ids);
    expect(JSON.parse(json.text)).toEqual({ name: expect.stringMatching(/^[A-Z][a-z]+$/), age: expect.any(Number) });
    // Counted: 13 generations with a regex, each of the two patterns compiled once (kept for the requests after).
    const text = await metrics.registry.metrics();
    expect(text).toContain('sssd_pool_structured_outputs_total{kind="regex"} 13');
    expect(text).toContain('sssd_pool_regex_compiles_total 2');
  });

  it('ends a request whose regex builds past a request\'s bounds no sooner with speculation, or beside others sharing the pattern, than alone and without', async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    // A tenth of a pool's building work per request, and a shorter pattern: the bound comes within 120 tokens (seed 3
    // at 113, seed 4 at 137), not 400 of the pool's.
    const maskBounds = { ...REQUEST_MASK_BOUNDS, work: 1_000_000 };
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer), maskBounds });
    const story = tokenizer.encode(' the cat sat on the mat and the dog ran to the park'.repeat(20), { bos: false });
    const run = async (id: string, regex: string, seed: number, speculation: 'off' | 'sssd', predictionIds?: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: [1, ...tokenizer.encode('Once upon a time', { bos: false })], maxTokens: 120, regex, speculation, sampling: { temperature: 1, seed }, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
      const events = await c.done;
      const last = events.at(-1) as { type: string; finishReason?: string; code?: string; message?: string };
      // The tokens, and how it ended (the speculation counts aside).
      return { ids: tokensOf(events), type: last.type, finishReason: last.finishReason, code: last.code, message: last.message };
    };
    // A pattern whose states multiply (each position a choice), one per run so every run starts on a fresh automaton.
    const pattern = (k: number) => `[a-z ]*(a|e|t|o)[a-z ]{40}|${'q'.repeat(k)}z`;
    const ends = new Set<string>();
    for (const seed of [3, 4]) {
      const plain = await run(`bound-off-${seed}`, pattern(1 + seed * 10), seed, 'off');
      ends.add(plain.type);
      // With speculation, and beside three others of the same pattern: each charged only what its own masks build
      // (cutting drafts builds apart, and states built before cost it nothing), so none ends sooner than alone and
      // without; it may go further, with the same tokens.
      const drafted = await run(`bound-sssd-${seed}`, pattern(2 + seed * 10), seed, 'sssd', story);
      const together = await Promise.all([0, 1, 2, 3].map((i) => run(`bound-shared-${seed}-${i}`, pattern(3 + seed * 10), seed, i % 2 === 0 ? 'off' : 'sssd', i % 2 === 0 ? undefined : story)));
      for (const one of [drafted, ...together]) {
        expect(one.ids.slice(0, plain.ids.length), `seed ${seed}`).toEqual(plain.ids);
        if (plain.type === 'done') expect(one, `seed ${seed}`).toEqual(plain);
      }
    }
    // At least one of them ran into its bounds (the case the rule is for), one went to its end.
    expect([...ends].sort()).toEqual(['done', 'error']);
  });

  it('refuses a regex it cannot read, or with choices or ignoreEos, or one the other masks leave nothing to start with', async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const s = scheduler(null, new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer) });
    let n = 0;
    const refused = (extra: Record<string, unknown>) => () => s.submit(generateRequestSchema.parse({ id: `regex-none-${n++}`, promptIds: [1, 403], maxTokens: 4, ...extra }), collect().sink);
    expect(refused({ regex: '(ab' })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringMatching(/^regex: /) }));
    expect(refused({ regex: '(?=a)b' })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('regex: ') }));
    expect(refused({ regex: 'yes', choices: ['yes'] })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('one structured output at a time') }));
    expect(refused({ regex: 'yes', ignoreEos: true })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('regex with ignoreEos') }));
    const a = tokenizer.encode('a', { bos: false });
    expect(refused({ regex: 'b+', allowedTokenIds: a })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('regex leaves no token to generate') }));
    // The resumed output is no start of a match.
    const yes = tokenizer.encode('yes', { bos: false });
    expect(refused({ regex: 'no', promptIds: [1, ...yes], resumedOutputTokens: yes.length })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('start of no match') }));
    // A regex the pool can follow from a resumed output: admitted.
    const going = collect();
    s.submit(generateRequestSchema.parse({ id: 'regex-resumed', promptIds: [1, ...yes], resumedOutputTokens: yes.length, maxTokens: 6, regex: 'yes!{1,3}' }), going.sink);
    const tail = tokensOf(await going.done);
    expect(runner.config.eosIds).toContain(tail.at(-1));
    expect(tokenizer.decode(tail.slice(0, -1))).toMatch(/^!{1,3}$/);
  });

  it("writes a sentence of a GBNF grammar (vLLM's structured_outputs.grammar), recursive rules included, greedy with speculation as without", async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const metrics = new PoolMetrics();
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), metrics, { tokenTexts: TokenTexts.of(tokenizer) });
    const eos = runner.config.eosIds[0];
    const run = (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => textRun(s, tokenizer, 80, id, speculation, extra, predictionIds);
    const free = await run('grammar-free', 'off', { ignoreEos: true });
    const own = tokenizer.decode(free.ids.slice(0, 10)).replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n');
    // The model's own words, then nested parenthesised lower-case words to a full stop; and a JSON object with a list of up to two (nested lists or names).
    const grammars = [
      `root ::= "${own}" tail\ntail ::= [a-z ,]{0,40} ("(" tail ")")? "."`,
      'root ::= "{" ws "\\"name\\":" ws name "," ws "\\"tags\\":" ws list "}"\nname ::= "\\"" [A-Z] [a-z]{1,10} "\\""\nlist ::= "[" ( item ( "," ws item )? )? "]"\nitem ::= "\\"" [a-z]{1,8} "\\"" | list\nws ::= " "?',
    ];
    for (const grammar of grammars) {
      const automaton = compileGrammar(grammar);
      const plain = await run(`grammar-off-${grammar.length}`, 'off', { grammar });
      const drafted = await run(`grammar-sssd-${grammar.length}`, 'sssd', { grammar }, free.ids);
      expect({ ...drafted, drafted: 0 }).toEqual({ ...plain, drafted: 0 });
      expect(plain.finishReason).toBe('stop');
      expect(plain.ids.at(-1)).toBe(eos);
      const bytes = new TextEncoder().encode(plain.text);
      expect(automaton.accepting(automaton.follow(0, bytes, 0, bytes.length)), plain.text).toBe(true);
      if (grammar === grammars[0]) expect(drafted.drafted).toBeGreaterThan(0);
    }
    const json = await run('grammar-json', 'sssd', { grammar: grammars[1] }, free.ids);
    expect(JSON.parse(json.text)).toEqual({ name: expect.stringMatching(/^[A-Z][a-z]+$/), tags: expect.any(Array) });
    const text = await metrics.registry.metrics();
    expect(text).toContain('sssd_pool_structured_outputs_total{kind="grammar"} 5');
    expect(text).toContain('sssd_pool_grammar_compiles_total 2');
  });

  it('refuses a grammar it cannot take, or with another structured output or ignoreEos, naming grammar', async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
    const s = scheduler(null, new PoolMetrics(), { tokenTexts: TokenTexts.of(tokenizer) });
    let n = 0;
    const refused = (extra: Record<string, unknown>) => () => s.submit(generateRequestSchema.parse({ id: `grammar-none-${n++}`, promptIds: [1, 403], maxTokens: 4, ...extra }), collect().sink);
    const bad = (message: string | RegExp) => expect.objectContaining({ kind: 'bad_request', message: typeof message === 'string' ? expect.stringContaining(message) : expect.stringMatching(message) });
    expect(refused({ grammar: 'root ::= "a" (' })).toThrow(bad(/^grammar: .*line 1, column 14/));
    expect(refused({ grammar: 'root ::= root "a" | "a"' })).toThrow(bad(/^grammar: left recursion/));
    expect(refused({ grammar: 'root ::= x' })).toThrow(bad("grammar: undefined rule 'x'"));
    // Past its bounds in its first configuration: a 400, not a 500 after the thread was held for seconds.
    const pairs = ['root ::= r1 r1', ...Array.from({ length: 19 }, (_, i) => `r${i + 1} ::= r${i + 2} r${i + 2}`), 'r20 ::= "x" | ""'].join('\n');
    expect(refused({ grammar: pairs })).toThrow(bad(/^grammar: the grammar automaton grew past its limit \(200000 configurations in one step\)/));
    expect(refused({ grammar: 'root ::= "yes"', regex: 'yes' })).toThrow(bad('regex and grammar: one structured output at a time'));
    expect(refused({ grammar: 'root ::= "yes"', choices: ['yes'] })).toThrow(bad('choices and grammar: one structured output at a time'));
    expect(refused({ grammar: 'root ::= "yes"', ignoreEos: true })).toThrow(bad('grammar with ignoreEos'));
    const yes = tokenizer.encode('yes', { bos: false });
    expect(refused({ grammar: 'root ::= "no"', promptIds: [1, ...yes], resumedOutputTokens: yes.length })).toThrow(bad('start of no sentence of the grammar'));
    // Going on from a resumed output: the rest of the sentence.
    const going = collect();
    s.submit(generateRequestSchema.parse({ id: 'grammar-resumed', promptIds: [1, ...yes], resumedOutputTokens: yes.length, maxTokens: 6, grammar: 'root ::= "yes" bang\nbang ::= "!" more?\nmore ::= "!" "!"?' }), going.sink);
    const goingEvents = await going.done;
    const tail = tokensOf(goingEvents);
    expect(runner.config.eosIds).toContain(tail.at(-1));
    expect(tokenizer.decode(tail.slice(0, -1))).toMatch(/^!{1,3}$/);
  });

  it('refuses an allowed list the other masks leave empty, and ends a generation they empty later with their own words, not the model\'s', async () => {
    const s = scheduler(null);
    const eos = runner.config.eosIds[0];
    const refused = (extra: Record<string, unknown>) => () => s.submit(generateRequestSchema.parse({ id: 'none-left', promptIds: [1, 403], maxTokens: 4, ...extra }), collect().sink);
    expect(refused({ allowedTokenIds: [5], badWords: [[5]] })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('allowedTokenIds leaves no token to generate') }));
    expect(refused({ allowedTokenIds: [eos, 7], minTokens: 2, badWords: [[7]] })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('before minTokens') }));
    // The end token alone, with no minTokens: generated (and the generation ends there), not refused.
    const ends = collect();
    s.submit(generateRequestSchema.parse({ id: 'eos-only', promptIds: [1, 403], maxTokens: 4, allowedTokenIds: [eos] }), ends.sink);
    expect(tokensOf(await ends.done)).toEqual([eos]);
    // Two ids allowed, every pair of them a bad word: the first token goes through, the second has none left.
    const later = collect();
    s.submit(generateRequestSchema.parse({ id: 'emptied', promptIds: [1, 403], maxTokens: 4, allowedTokenIds: [5, 6], badWords: [[5, 5], [5, 6], [6, 5], [6, 6]] }), later.sink);
    const events = await later.done;
    expect(tokensOf(events)).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'bad_request', message: expect.stringContaining("every token is masked here by the request's own settings") });
    // Emptied in the middle of a drafted path: the tokens accepted before it are sent, as plain decoding sends them.
    const drafting = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const emptiedAt = async (speculation: 'off' | 'sssd'): Promise<{ ids: number[]; last: PoolEvent | undefined; drafted: number }> => {
      const c = collect();
      const repeats = Array.from({ length: 12 }, () => 261);
      drafting.submit(generateRequestSchema.parse({ id: `emptied-${speculation}`, promptIds: [1, ...repeats], maxTokens: 20, speculation, allowedTokenIds: [261, eos], minTokens: 10, badWords: [[261, 261, 261, 261, 261]] }, ), c.sink);
      const all = await c.done;
      return { ids: tokensOf(all), last: all.at(-1), drafted: all.reduce((n, e) => n + (e.type === 'tokens' ? e.drafted : 0), 0) };
    };
    const [off, sssd] = [await emptiedAt('off'), await emptiedAt('sssd')];
    expect(off.ids).toEqual([261, 261, 261, 261]);
    expect(sssd.drafted).toBeGreaterThan(0);
    expect(sssd.ids).toEqual(off.ids);
    for (const run of [off, sssd]) expect(run.last).toMatchObject({ type: 'error', code: 'bad_request' });
  });

  it("ends at a stop token id, runs past the end token with ignoreEos, holds both back for minTokens, and keeps to allowedTokenIds: with speculation as without", async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const eos = runner.config.eosIds[0];
    const run = async (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 40, speculation, ...extra, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
      const events = await c.done;
      return { ids: tokensOf(events), finishReason: (events.at(-1) as { finishReason?: unknown }).finishReason };
    };
    /** The same with speculation off and with `sssd` drafting from the output itself (long accepted paths). */
    const both = async (name: string, extra: Record<string, unknown>) => {
      const plain = await run(`${name}-off`, 'off', extra);
      const drafted = await run(`${name}-sssd`, 'sssd', extra, plain.ids);
      expect(drafted, name).toEqual(plain);
      return plain;
    };
    const free = await both('free', {});
    // A stop token id: the first time it comes, emitted as the last id.
    const stopAt = free.ids.findIndex((t, i) => i >= 4 && t !== eos);
    const stopToken = free.ids[stopAt];
    const stopped = await both('stop-id', { stopTokenIds: [stopToken] });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.ids).toEqual(free.ids.slice(0, free.ids.indexOf(stopToken) + 1));
    // The end token forced at every step: it ends the generation at once, unless ignoreEos.
    const forced = { sampling: { logitBias: { [String(eos)]: 100 } } };
    expect(await both('eos', forced)).toEqual({ ids: [eos], finishReason: 'stop' });
    expect(await both('ignore-eos', { ...forced, ignoreEos: true })).toEqual({ ids: new Array(40).fill(eos), finishReason: 'length' });
    // minTokens: no end token before 7 tokens, then the forced one.
    const held = await both('min-tokens', { ...forced, minTokens: 7 });
    expect(held.finishReason).toBe('stop');
    expect(held.ids).toHaveLength(8);
    expect(held.ids.slice(0, 7)).not.toContain(eos);
    expect(held.ids[7]).toBe(eos);
    // And a stop token id held back likewise: not among the first tokens, though greedy decoding would pick it there.
    const heldStop = await both('min-tokens-stop-id', { stopTokenIds: [stopToken], minTokens: free.ids.indexOf(stopToken) + 3 });
    expect(heldStop.ids.slice(0, free.ids.indexOf(stopToken) + 3)).not.toContain(stopToken);
    // Only the allowed ids (vLLM's allowed_token_ids): drafts of others are rejected as plain decoding never picks them.
    const allowed = [...new Set(free.ids.slice(0, 6))].filter((t) => t !== eos);
    const narrowed = await both('allowed', { allowedTokenIds: allowed });
    expect(narrowed.ids.length).toBeGreaterThan(0);
    expect(narrowed.ids.every((t) => allowed.includes(t))).toBe(true);
    expect(() => s.submit(generateRequestSchema.parse({ id: 'allowed-past', promptIds: [1], maxTokens: 4, allowedTokenIds: [2, runner.config.vocabSize] }), collect().sink)).toThrow(
      expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('allowedTokenIds[1]') }),
    );
    // A stop token id outside the vocabulary is refused at the door.
    expect(() => s.submit(generateRequestSchema.parse({ id: 'stop-past', promptIds: [1], maxTokens: 4, stopTokenIds: [runner.config.vocabSize] }), collect().sink)).toThrow(
      expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('stopTokenIds[0]') }),
    );
  });

  it("ends a generation at the token whose text completes a stop string (the edge's stop), with speculation as without, counting only what it generated", async () => {
    const tokenizer = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');
    const metrics = new PoolMetrics();
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), metrics, { tokenizer });
    const eos = new Set(runner.config.eosIds);
    /** The output's text as the edge prints it, after the prompt's last token. */
    const printed = (ids: readonly number[]): string => {
      const decoder = tokenizer.createDecoder({ previousId: REPEATING_PROMPT.at(-1) });
      return ids.map((id) => (eos.has(id) ? '' : decoder.push(id))).join('');
    };
    const run = async (id: string, speculation: 'off' | 'sssd', extra: Record<string, unknown>, predictionIds?: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 60, speculation, ...extra, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
      const events = await c.done;

      return { ids: tokensOf(events), finishReason: (events.at(-1) as { finishReason?: unknown }).finishReason };
    };
    const free = await run('free', 'off', { sampling: { logitBias: { [String(runner.config.eosIds[0])]: -100 } } });
    expect(free.finishReason).toBe('length');
    const text = printed(free.ids);
    // A stop string from the middle of the output, split over tokens: the generation ends at the token that completes it.
    const stop = text.slice(30, 37);
    const end = text.indexOf(stop) + stop.length;
    const last = free.ids.findIndex((_, i) => printed(free.ids.slice(0, i + 1)).length >= end);
    expect(last).toBeLessThan(free.ids.length - 10);
    const generatedBefore = (await metrics.generationTokens.get()).values[0]?.value ?? 0;
    const extra = { stopStrings: [stop, 'zzzz'], stopMatcher: STOP_MATCHER_VERSION, sampling: { logitBias: { [String(runner.config.eosIds[0])]: -100 } } };
    // sssd drafts the whole output from its prediction: the stop comes in the middle of a step's accepted path.
    const plain = await run('stop-off', 'off', extra);
    const drafted = await run('stop-sssd', 'sssd', extra, free.ids);
    for (const stopped of [plain, drafted]) expect(stopped).toEqual({ ids: free.ids.slice(0, last + 1), finishReason: 'stop' });
    expect((await metrics.generationTokens.get()).values[0].value - generatedBefore).toBe(2 * (last + 1));
    const reasons = Object.fromEntries((await metrics.requestsByReason.get()).values.map((v) => [v.labels.finished_reason, v.value]));
    expect(reasons).toMatchObject({ stop: 2, length: 1 });
    // Within minTokens it does not count (the edge's rule): the generation runs on.
    expect(await run('stop-held', 'off', { ...extra, minTokens: last + 1 })).toMatchObject({ finishReason: 'length' });
    // A resumed generation goes on from its earlier output's text: the stop string begun there ends it at the same token.
    const resumedAt = last - 1;
    const resumed = await run('stop-resumed', 'sssd', { ...extra, promptIds: [...REPEATING_PROMPT, ...free.ids.slice(0, resumedAt)], resumedOutputTokens: resumedAt, maxTokens: 60 - resumedAt });
    expect(resumed).toEqual({ ids: free.ids.slice(resumedAt, last + 1), finishReason: 'stop' });
    // Named no rules (a client that cuts no text itself, review h174): this pool's own, the same stop. Named another
    // version's (an edge of another release): left to its sender, the generation runs on.
    const { stopMatcher: _named, ...unnamed } = extra;
    expect(await run('stop-unnamed', 'off', unnamed)).toEqual({ ids: free.ids.slice(0, last + 1), finishReason: 'stop' });
    expect(await run('stop-other-rules', 'off', { ...extra, stopMatcher: STOP_MATCHER_VERSION + 1 })).toMatchObject({ finishReason: 'length' });
    // Without a tokenizer the pool leaves stop strings to the edge.
    const blind = scheduler(null);
    const c = collect();
    blind.submit(generateRequestSchema.parse({ id: 'blind', promptIds: REPEATING_PROMPT, maxTokens: 60, speculation: 'off', ...extra }), c.sink);
    expect(tokensOf(await c.done)).toEqual(free.ids);
  });

  it('admits up to exactly its token capacity, and refuses ids one past the vocabulary', async () => {
    // One scheduler at a time on the shared runner: each is done before the next starts.
    const pool = () => scheduler(null, new PoolMetrics(), { limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 40 } });
    const whole = pool();
    const all = collect();
    whole.submit(generateRequestSchema.parse({ id: 'all-of-it', promptIds: [1, 403, 407], maxTokens: 37, speculation: 'off' }), all.sink);
    expect(whole.stats().reservedTokens).toBe(40);
    whole.cancel('all-of-it');
    await all.done;
    await whole.close();

    const s = pool();
    const runs: ReturnType<typeof collect>[] = [];
    const submit = (id: string, maxTokens: number, extra: Record<string, unknown> = {}) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: [1, 403, 407], maxTokens, speculation: 'off', ...extra }), c.sink);
      runs.push(c);
    };
    const vocab = runner.config.vocabSize;
    // One past the vocabulary is outside it (a prediction's token would reach the pass and fail the batch's).
    expect(() => submit('pred-past', 4, { predictionIds: [vocab] })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('predictionIds[0]') }));
    expect(() => submit('bias-past', 4, { sampling: { logitBias: { [String(vocab)]: 5 } } })).toThrow(expect.objectContaining({ kind: 'bad_request', message: expect.stringContaining('logitBias') }));
    // More than the pool holds is a request that can never run here (exactly all of it can, above): too large for
    // this pool (a 413), which another pool with a larger limit may run.
    expect(() => submit('too-big', 38)).toThrow(expect.objectContaining({ kind: 'too_large', message: expect.stringContaining('this pool holds at most 40') }));
    // Two of 20 tokens each fill the 40 exactly (submitted in one go: neither has ended); a third of 4 waits for room.
    submit('first-half', 17);
    submit('second-half', 17);
    expect(s.stats().reservedTokens).toBe(40);
    expect(() => submit('no-room', 1)).toThrow(expect.objectContaining({ kind: 'busy' }));
    for (const c of runs) expect((await c.done).at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    expect(runs).toHaveLength(2);
    await s.close();
  });

  it('a new request prefills in the same forward pass as a running one decodes', async () => {
    const s = scheduler(null);
    runner.steps = [];
    const a = collect();
    s.submit(generateRequestSchema.parse({ id: 'a', promptIds: [1], maxTokens: 120, speculation: 'off' }), a.sink);
    while (a.events.filter((e) => e.type === 'tokens').length < 5) await new Promise((r) => setImmediate(r));
    const b = collect();
    const prompt = [1, 403, 407, 261, 378, 432, 383];
    s.submit(generateRequestSchema.parse({ id: 'b', promptIds: prompt, maxTokens: 10, speculation: 'off' }), b.sink);
    await Promise.all([a.done, b.done]);
    // One step carried A's decode row (1 token) and B's prefill row (the prompt).
    expect(runner.steps.some((rows) => rows.length === 2 && rows.includes(1) && rows.includes(prompt.length))).toBe(true);
    // Every step while both ran had both rows: no step for one request alone.
    const aTokens = a.events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    expect(aTokens.length).toBe(120);
    expect(runner.steps.length).toBe(120);
  });

  it('a long prompt goes in by chunks beside a decoding row, and both emit what they would alone', async () => {
    // A natural 150-token prompt: a reference story and its continuation.
    const story = fixtureStory(0);
    const prompt = [...story.prompt_ids, ...story.output_ids].slice(0, 150);
    expect(prompt.length).toBe(150);
    const whole = collect();
    scheduler(null).submit(generateRequestSchema.parse({ id: 'whole', promptIds: prompt, maxTokens: 30, speculation: 'off' }), whole.sink);
    const wholeIds = tokensOf(await whole.done);

    const chunked = chunkedScheduler(32);
    runner.steps = [];
    const a = collect();
    chunked.submit(generateRequestSchema.parse({ id: 'a', promptIds: [1], maxTokens: 60, speculation: 'off' }), a.sink);
    while (a.events.filter((e) => e.type === 'tokens').length < 5) await new Promise((r) => setImmediate(r));
    const b = collect();
    chunked.submit(generateRequestSchema.parse({ id: 'b', promptIds: prompt, maxTokens: 30, speculation: 'context' }), b.sink);
    const [aEvents, bEvents] = await Promise.all([a.done, b.done]);

    // B fed 32 tokens a step beside A's decode row, four times, then its last 22 with its first draft.
    const chunkSteps = runner.steps.filter((rows) => rows.length === 2 && rows.includes(32));
    expect(chunkSteps.length).toBe(4);
    expect(Math.max(...runner.steps.flat())).toBeLessThanOrEqual(22 + 16);
    expect(tokensOf(bEvents)).toEqual(wholeIds);
    expect(bEvents.at(-1)).toMatchObject({ type: 'done', finishReason: 'length', usage: { promptTokens: 150, completionTokens: 30 } });
    const plainA = collect();
    scheduler(null).submit(generateRequestSchema.parse({ id: 'plain-a', promptIds: [1], maxTokens: 60, speculation: 'off' }), plainA.sink);
    expect(tokensOf(aEvents)).toEqual(tokensOf(await plainA.done));
  });

  it('prompts arriving together share one chunk of prompt tokens a step, oldest first', async () => {
    const story = fixtureStory(1);
    const prompt = [...story.prompt_ids, ...story.output_ids].slice(0, 100);
    const wholeIds = await plainIds(prompt, 20);
    const chunked = chunkedScheduler(40, null);
    runner.steps = [];
    const runs = ['p', 'q', 'r'].map((id) => {
      const c = collect();
      chunked.submit(generateRequestSchema.parse({ id, promptIds: prompt, maxTokens: 20, speculation: 'off' }), c.sink);
      return c.done;
    });
    const outputs = (await Promise.all(runs)).map(tokensOf);
    // 300 prompt tokens, 40 a step: p's 100 go in first (40, 40, 20 + 20 of q's), then q's, then r's.
    for (const rows of runner.steps) expect(rows.filter((t) => t > 1).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(40);
    expect(runner.steps.slice(0, 3)).toEqual([[40], [40], [20, 20]]);
    for (const ids of outputs) expect(ids).toEqual(wholeIds);
  });

  it("gives a free slot to the tenant waiting longest for one, not to the one that queued most; one tenant's queue keeps its order", async () => {
    const s = new Scheduler(runner, { limits: { maxActive: 1, maxQueued: 8, maxTotalTokens: 100_000 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
    const started: string[] = [];
    const submit = (id: string, tenant?: string): Promise<PoolEvent[]> => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: [1, 403, 407], maxTokens: 6, speculation: 'off', ...(tenant ? { tenant } : {}) }), {
        send: (e) => {
          if (e.type === 'start') started.push(id);
          c.sink.send(e);
        },
        end: () => c.sink.end(),
      });
      return c.done;
    };
    const runs = [submit('a1', 'a'), submit('a2', 'a'), submit('a3', 'a'), submit('a4', 'a'), submit('b1', 'b'), submit('shared1'), submit('b2', 'b'), submit('shared2')];
    await Promise.all(runs);
    // a1 had the row at once; then each tenant in turn by how long since it had one (b and the shared one
    // queued after a1 started: behind a in the rotation), a tenant's own in the order sent.
    expect(started).toEqual(['a1', 'a2', 'b1', 'shared1', 'a3', 'b2', 'shared2', 'a4']);
    // With one row of a tenant running and none of another's, the other's goes first whatever it waited.
    const wide = new Scheduler(runner, { limits: { maxActive: 2, maxQueued: 8, maxTotalTokens: 100_000 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
    const order: string[] = [];
    const long = collect();
    wide.submit(generateRequestSchema.parse({ id: 'x-long', promptIds: [1, 403], maxTokens: 200, speculation: 'off', tenant: 'x' }), long.sink);
    const short = (id: string, tenant: string): Promise<PoolEvent[]> => {
      const c = collect();
      wide.submit(generateRequestSchema.parse({ id, promptIds: [1, 403, 407], maxTokens: 4, speculation: 'off', tenant }), {
        send: (e) => {
          if (e.type === 'start') order.push(id);
          c.sink.send(e);
        },
        end: () => c.sink.end(),
      });
      return c.done;
    };
    await Promise.all([short('x1', 'x'), short('x2', 'x'), short('x3', 'x'), short('y1', 'y'), short('y2', 'y')]);
    // All queued by the first admission: x held a row (x-long) and y none, so y's went first.
    expect(order).toEqual(['y1', 'y2', 'x1', 'x2', 'x3']);
    wide.cancel('x-long');
    await long.done;
  });

  it("holds the reserve's rows back from a tenant with rows running while another tenant shares the pool: that tenant's next request starts at the next step", async () => {
    const { s, metrics, startedAtStep, submit } = reservedPool(16);
    // b is seen first (one short request), then hog floods with long ones.
    await submit('b0', 'b', 2);
    const hog = Array.from({ length: 8 }, (_, i) => submit(`hog${i}`, 'hog', 400));
    while (runner.steps.length < (startedAtStep.get('hog0') ?? Infinity) + 5) await new Promise((r) => setImmediate(r));
    // Three rows of four: the fourth is held back while b's last request ended moments ago.
    expect(s.stats().active).toBe(3);
    expect((await metrics.tenantReserveHeldRows.get()).values[0].value).toBe(1);
    const submittedAt = runner.steps.length;
    await submit('b1', 'b', 4);
    // Admitted before the step after its submission, not after one of hog's 400-token generations.
    expect(startedAtStep.get('b1')! - submittedAt).toBeLessThanOrEqual(1);
    expect((await metrics.tenantReserveAdmissions.get()).values[0].value).toBe(1);
    for (let i = 0; i < 8; i++) s.cancel(`hog${i}`);
    await Promise.all(hog);

    // One tenant alone fills every row.
    const alone = new Scheduler(runner, { limits: { maxActive: 4, maxQueued: 16, maxTotalTokens: 100_000, tenantReserve: 1 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
    const runs = Array.from({ length: 6 }, (_, i) => {
      const c = collect();
      alone.submit(generateRequestSchema.parse({ id: `solo${i}`, promptIds: [1, 403, 407], maxTokens: 400, speculation: 'off', tenant: 'solo', ignoreEos: true }), c.sink);
      return c.done;
    });
    while (alone.stats().steps < 3) await new Promise((r) => setImmediate(r));
    expect(alone.stats().active).toBe(4);
    for (let i = 0; i < 6; i++) alone.cancel(`solo${i}`);
    await Promise.all(runs);
  });

  /** A scheduler of 4 rows, one the reserve's, on `run` (the real runner by default), and a submit that records each generation's start step. */
  function reservedPool(maxQueued: number, run: BatchRunner<SequenceKvCache> = runner) {
    const metrics = new PoolMetrics();
    const s = new Scheduler(run, { limits: { maxActive: 4, maxQueued, maxTotalTokens: 100_000, tenantReserve: 1 }, budget: null, metrics, createDrafter: drafterFactory(null) });
    const startedAtStep = new Map<string, number>();
    const submit = (id: string, tenant: string, maxTokens: number): Promise<PoolEvent[]> => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: [1, 403, 407], maxTokens, speculation: 'off', tenant, ignoreEos: true }), {
        send: (e) => {
          if (e.type === 'start') startedAtStep.set(id, runner.steps.length);
          c.sink.send(e);
        },
        end: () => c.sink.end(),
      });
      return c.done;
    };
    const refusal = (id: string, tenant: string): { kind: string; message: string } | null => {
      try {
        void submit(id, tenant, 400);
      } catch (err) {
        return err as { kind: string; message: string };
      }
      return null;
    };
    const steps = async (n: number): Promise<void> => {
      const until = runner.steps.length + n;
      while (runner.steps.length < until) await new Promise((r) => setImmediate(r));
    };
    const gauge = async (g: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> => (await g.get()).values[0].value;
    return { s, metrics, startedAtStep, submit, refusal, steps, gauge };
  }

  it('with --max-queued 0 the reserve queues nothing past it, and the tenant it keeps the row for is admitted, not refused busy (review h208)', async () => {
    const { s, metrics, startedAtStep, submit, refusal, steps, gauge } = reservedPool(0);
    await submit('b0', 'b', 2);
    const hog = [submit('hog0', 'hog', 400), submit('hog1', 'hog', 400), submit('hog2', 'hog', 400)];
    await steps(3);
    expect(s.stats().active).toBe(3);
    // The fourth row is b's while b shares the pool: hog's fourth has no place (it waited in a queue of 0, the row empty).
    const kept = refusal('hog3', 'hog');
    expect(kept?.kind).toBe('busy');
    // Said from what runs and waits, not "all 4 running".
    expect(kept?.message).toContain('3 of its 4 rows running, 1 kept free for tenants with none running, and 0 of its 0 queued places taken');
    expect(s.stats().queued).toBe(0);
    const submittedAt = runner.steps.length;
    const b1 = submit('b1', 'b', 4);
    await b1;
    expect(startedAtStep.get('b1')! - submittedAt).toBeLessThanOrEqual(1);
    expect(await gauge(metrics.tenantReserveAdmissions)).toBe(1);
    // Every row running (b's a long one now): a plain busy, said as it is.
    const b2 = submit('b2', 'b', 400);
    await steps(2);
    expect(refusal('hog4', 'hog')?.message).toContain('(4 of its 4 rows running and 0 of its 0 queued places taken)');
    for (const id of ['hog0', 'hog1', 'hog2', 'b2']) s.cancel(id);
    await Promise.all([...hog, b2]);
  });

  it('with a queue full of held-back generations, a tenant with none running still gets the kept row (--max-queued 1)', async () => {
    const { s, startedAtStep, submit, refusal, steps } = reservedPool(1);
    await submit('b0', 'b', 2);
    const hog = [submit('hog0', 'hog', 400), submit('hog1', 'hog', 400), submit('hog2', 'hog', 400), submit('hog3', 'hog', 400)];
    await steps(3);
    expect(s.stats()).toMatchObject({ active: 3, queued: 1 });
    expect(refusal('hog4', 'hog')?.kind).toBe('busy');
    const submittedAt = runner.steps.length;
    expect(refusal('c0', 'c')).toBeNull();
    await steps(2);
    expect(startedAtStep.get('c0')! - submittedAt).toBeLessThanOrEqual(1);
    expect(s.stats()).toMatchObject({ active: 4, queued: 1 });
    for (const id of ['hog0', 'hog1', 'hog2', 'hog3', 'c0']) s.cancel(id);
    await Promise.all(hog);
  });

  it('a draining pool keeps no row for a tenant that can no longer come (review h208)', async () => {
    const { s, metrics, submit, steps, gauge } = reservedPool(16);
    await submit('b0', 'b', 2);
    const hog = Array.from({ length: 6 }, (_, i) => submit(`hog${i}`, 'hog', 400));
    await steps(3);
    expect(s.stats().active).toBe(3);
    expect(await gauge(metrics.tenantReserveHeldRows)).toBe(1);
    const drained = s.drain();
    await steps(2);
    expect(s.stats().active).toBe(4);
    expect(await gauge(metrics.tenantReserveHeldRows)).toBe(0);
    for (let i = 0; i < 6; i++) s.cancel(`hog${i}`);
    await Promise.all(hog);
    await drained;
  });

  it("counts a reserve admission only for a row the reserve held empty, once the generation started (review h208)", async () => {
    // Nothing held: hog runs three with nothing queued, b takes the free fourth as it would without any reserve.
    const first = reservedPool(16);
    const hog = [first.submit('hog0', 'hog', 400), first.submit('hog1', 'hog', 400), first.submit('hog2', 'hog', 400)];
    await first.steps(2);
    await first.submit('b0', 'b', 2);
    expect(await first.gauge(first.metrics.tenantReserveHeldRows)).toBe(0);
    expect(await first.gauge(first.metrics.tenantReserveAdmissions)).toBe(0);
    for (let i = 0; i < 3; i++) first.s.cancel(`hog${i}`);
    await Promise.all(hog);

    // A held row, but the generation that would take it gets no memory: it did not start, so it is not counted.
    let failNext = false;
    const failing: BatchRunner<SequenceKvCache> = {
      get config() {
        return runner.config;
      },
      newSequence: (capacity) => {
        if (failNext) {
          failNext = false;
          throw new RangeError('Array buffer allocation failed');
        }
        return runner.newSequence(capacity);
      },
      step: (rows) => runner.step(rows),
    };
    const second = reservedPool(16, failing);
    await second.submit('b0', 'b', 2);
    const hog2 = Array.from({ length: 5 }, (_, i) => second.submit(`hog${i}`, 'hog', 400));
    await second.steps(3);
    expect(await second.gauge(second.metrics.tenantReserveHeldRows)).toBe(1);
    failNext = true;
    const failed = await second.submit('b1', 'b', 4);
    expect(failed.at(-1)).toMatchObject({ type: 'error' });
    expect(await second.gauge(second.metrics.tenantReserveAdmissions)).toBe(0);
    await second.submit('b2', 'b', 4);
    expect(await second.gauge(second.metrics.tenantReserveAdmissions)).toBe(1);
    for (let i = 0; i < 5; i++) second.s.cancel(`hog${i}`);
    await Promise.all(hog2);
  });

  it("a fresh pool's slow first steps do not stretch its busy hint (a median of recent steps, not an average)", async () => {
    // The first step 400 ms (compiling, the first prefill), every later one as fast as the runner goes.
    const warming = delayedRunner((step) => (step === 0 ? 400 : 0));
    const s = new Scheduler(warming, { limits: { maxActive: 1, maxQueued: 0, maxTotalTokens: 600 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
    const c = collect();
    s.submit(generateRequestSchema.parse({ id: 'long', promptIds: [1, 403], maxTokens: 400, speculation: 'off', sampling: { temperature: 1, seed: 1, logitBias: { '1': -100 } } }), c.sink);
    while (c.events.filter((e) => e.type === 'tokens').length < 20) await new Promise((r) => setImmediate(r));
    let hint = NaN;
    try {
      s.submit(generateRequestSchema.parse({ id: 'late', promptIds: [1], maxTokens: 4 }), collect().sink);
    } catch (err) {
      hint = (err as { retryAfterMs: number }).retryAfterMs;
    }
    // ~380 steps left at well under 5 ms each; an average still carrying the 400 ms step said ~18 s.
    expect(hint).toBeLessThan(2000);
    expect(s.cancel('long')).toBe(true);
    await c.done;
  });

  it("a fresh pool's busy hint waits for a window of steps: its first cold steps alone do not set it", async () => {
    // Every one of the first steps 300 ms (a cold pool's): a hint from them would be ~390 steps of 300 ms, the 30 s clamp.
    const { s, c } = await fullWithOneLong(delayedRunner((step) => (step < 3 ? 300 : 0)), 3);
    const hint = lateRefusal(s)?.retryAfterMs ?? NaN;
    expect(hint).toBe(500);
    expect(s.cancel('long')).toBe(true);
    await c.done;
  });

  it('a busy answer names the limit it hit and hints at when room is likely, not a fixed half second', async () => {
    // Steps of at least 5 ms: what the hint is counted in.
    const { s, c } = await fullWithOneLong(delayedRunner(() => 5), 20);
    const busy = lateRefusal(s);
    expect(busy).toMatchObject({ kind: 'busy', message: expect.stringMatching(/\(1 of its 1 rows running and 0 of its 0 queued places taken\)/) });
    // ~380 steps left of the one running, 5 ms or more each: seconds, not a fixed 500 ms; within the clamp.
    expect(busy!.retryAfterMs).toBeGreaterThan(1500);
    expect(busy!.retryAfterMs).toBeLessThanOrEqual(30_000);
    // A request that can never run is refused as such while full, not told to retry: a trie that is not base64,
    // or one naming a token outside the vocabulary.
    const outside = Buffer.from(encodeEdgeTrie([1, 9999], [-1, 0], [1, 1])).toString('base64');
    for (const [trie, why] of [['!!!', /trie: not valid base64/], [outside, /trie: token 9999 is outside the vocabulary/]] as const) {
      expect(() => s.submit(generateRequestSchema.parse({ id: 'bad-trie', promptIds: [1], maxTokens: 4, speculation: 'sssd', trie }), collect().sink)).toThrow(
        expect.objectContaining({ kind: 'bad_request', message: expect.stringMatching(why) }),
      );
    }
    expect(s.cancel('long')).toBe(true);
    await c.done;
    // The token limit named as such.
    const wide = new Scheduler(runner, { limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 600 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null) });
    const first = collect();
    wide.submit(generateRequestSchema.parse({ id: 'big', promptIds: [1, 403], maxTokens: 400, speculation: 'off' }), first.sink);
    expect(() => wide.submit(generateRequestSchema.parse({ id: 'big-2', promptIds: [1, 403], maxTokens: 400 }), collect().sink)).toThrow(/402 of its 600 tokens are reserved and this request needs 402/);
    wide.cancel('big');
    await first.done;
  });

  it('a scored prompt goes in by chunks like any other, and scores the same as whole, alternatives and continuation included', async () => {
    const story = fixtureStory(1);
    const prompt = [...story.prompt_ids, ...story.output_ids].slice(0, 100);
    const promptLogprobsOf = (events: PoolEvent[]) => events.find((e): e is Extract<PoolEvent, { type: 'prompt-logprobs' }> => e.type === 'prompt-logprobs')!;
    const scoredAlone = collect();
    chunkedScheduler(0, null).submit(generateRequestSchema.parse({ id: 'alone', promptIds: prompt, maxTokens: 3, promptLogprobs: 2, speculation: 'off' }), scoredAlone.sink);
    const aloneEvents = await scoredAlone.done;
    const alone = promptLogprobsOf(aloneEvents);
    expect(alone.logprobs).toHaveLength(prompt.length - 1);
    const chunked = chunkedScheduler(40, null);
    runner.steps = [];
    const plain = collect();
    chunked.submit(generateRequestSchema.parse({ id: 'plain', promptIds: prompt, maxTokens: 4, speculation: 'off' }), plain.sink);
    const scored = collect();
    chunked.submit(generateRequestSchema.parse({ id: 'scored', promptIds: prompt, maxTokens: 3, promptLogprobs: 2, speculation: 'off' }), scored.sink);
    const [, events] = await Promise.all([plain.done, scored.done]);
    // 200 prompt tokens, 40 a step: never a pass of more (the scored 100 went in whole, holding the streams beside it).
    for (const rows of runner.steps) expect(rows.reduce((sum, t) => sum + (t > 1 ? t : 0), 0)).toBeLessThanOrEqual(40);
    expect(runner.steps.some((rows) => rows.includes(100))).toBe(false);
    const lps = promptLogprobsOf(events);
    expect(lps.logprobs).toHaveLength(prompt.length - 1);
    lps.logprobs.forEach((lp, i) => expect(lp, `token ${i + 1}`).toBeCloseTo(alone.logprobs[i], 4));
    lps.topLogprobs!.forEach((top, i) => expect(top.map(([id]) => id), `token ${i + 1}`).toEqual(alone.topLogprobs![i].map(([id]) => id)));
    // And the continuation after it is the one a whole prefill gives.
    expect(tokensOf(events)).toHaveLength(3);
    expect(tokensOf(events)).toEqual(tokensOf(aloneEvents));
  });

  it("a pass that fails outright ends its own rows, not a prompt chunked prefill held out of it", async () => {
    const story = fixtureStory(1);
    const prompt = [...story.prompt_ids, ...story.output_ids].slice(0, 100);
    const wholeIds = await plainIds(prompt, 20);
    let failures = 0;
    const s = new Scheduler(
      failingRunner(true, () => {
        if (failures > 0) {
          failures -= 1;
          throw new Error('device lost');
        }
      }),
      { limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 }, budget: null, metrics: new PoolMetrics(), createDrafter: drafterFactory(null), prefillChunk: 100 },
    );
    const start = (id: string, promptIds: number[]) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds, maxTokens: 20, speculation: 'off' }), c.sink);
      return c;
    };
    const lead = start('lead', [1, 403]);
    while (!lead.events.some((e) => e.type === 'tokens')) await new Promise((r) => setImmediate(r));
    // Both join at the next step; its chunk of 100 prompt tokens is first's, and held's prompt waits.
    const first = start('first', prompt);
    const held = start('held', prompt);
    // That step's pass fails whole, then each of its two rows alone: the step fails outright.
    failures = 3;
    const [leadEvents, firstEvents, heldEvents] = await Promise.all([lead.done, first.done, held.done]);
    expect(failures).toBe(0);
    for (const events of [leadEvents, firstEvents]) expect(events.at(-1)).toMatchObject({ type: 'error', message: expect.stringContaining('device lost') });
    // In no pass that failed: it goes on as it would have.
    expect(heldEvents.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    expect(tokensOf(heldEvents)).toEqual(wholeIds);
  });

  it('chunked prompts: a sampled request samples the same, a prompt-only one ends after its last chunk, a cancel mid-prompt frees its cache', async () => {
    const story = fixtureStory(2);
    const prompt = [...story.prompt_ids, ...story.output_ids].slice(0, 150);
    const chunked = chunkedScheduler(16);
    const whole = chunkedScheduler(0);
    const run = (s: Scheduler<SequenceKvCache>, id: string, extra: Record<string, unknown>) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: prompt, ...extra }), c.sink);
      return c.done;
    };
    const sampled = { maxTokens: 30, speculation: 'sssd', sampling: { temperature: 0.9, seed: 7 } };
    expect(tokensOf(await run(chunked, 's1', sampled))).toEqual(tokensOf(await run(whole, 's2', sampled)));

    const promptOnly = await run(chunked, 'read', { maxTokens: 0, speculation: 'off' });
    expect(tokensOf(promptOnly)).toEqual([]);
    expect(promptOnly.at(-1)).toMatchObject({ type: 'done', finishReason: 'length', usage: { promptTokens: 150, completionTokens: 0 } });

    runner.steps = [];
    runner.created = [];
    const cancelled = run(chunked, 'gone', { maxTokens: 30, speculation: 'off' });
    while (runner.steps.length < 2) await new Promise((r) => setImmediate(r));
    chunked.cancel('gone');
    expect((await cancelled).at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    // Stopped part way through its 150 prompt tokens, 16 a step, and its cache given back.
    expect(runner.steps.length).toBeLessThan(150 / 16);
    expect(runner.created.at(-1)!.isReleased).toBe(true);
  });

  it("the governor learns from whole decode cycles, never from one where a prompt joined", async () => {
    class RecordingGovernor extends SpeculationGovernor {
      readonly records: { batch: number; speculated: boolean; tokens: number; key: string }[] = [];
      override record(batch: number, speculated: boolean, tokens: number, ms: number, key = 'default'): void {
        this.records.push({ batch, speculated, tokens, key });
        super.record(batch, speculated, tokens, ms, key);
      }
    }
    const governor = new RecordingGovernor();
    const s = new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      governor,
      metrics: new PoolMetrics(),
      createDrafter: drafterFactory(null),
    });
    runner.steps = [];
    const a = collect();
    s.submit(generateRequestSchema.parse({ id: 'g1', promptIds: [1, 403, 407], maxTokens: 30, speculation: 'off' }), a.sink);
    while (a.events.filter((e) => e.type === 'tokens').length < 5) await new Promise((r) => setImmediate(r));
    const b = collect();
    s.submit(generateRequestSchema.parse({ id: 'g2', promptIds: [1, 403, 407, 261, 378], maxTokens: 10, speculation: 'off' }), b.sink);
    await Promise.all([a.done, b.done]);
    // The last cycle is recorded after its streaming turn.
    await new Promise((r) => setTimeout(r, 20));
    const prefillSteps = runner.steps.filter((rows) => rows.some((n) => n > 1)).length;
    expect(prefillSteps).toBe(2);
    // Plain cycles of 'off' rows count, for the plain arm every method shares.
    expect(governor.records.length).toBe(runner.steps.length - prefillSteps);
    expect(governor.records.every((r) => !r.speculated && r.key === 'off' && r.tokens === r.batch)).toBe(true);
  });

  it('holds speculation by 16 rows or more to the governor even where extra tokens are nearly free; a lone request is not held', async () => {
    const governor = new RefusingGovernor();
    const s = wideScheduler(gpuLike, governor);
    expect(new TreeBudget(gpuLike, { policy: 'marginal', maxNodes: 16 }).kneeTokens).toBeGreaterThanOrEqual(4 * 20);
    runner.steps = [];
    await Promise.all(Array.from({ length: 20 }, (_, i) => runContext(s, `wide${i}`, 24)));
    const wide = runner.steps.filter((rows) => rows.length >= GOVERNED_FROM_ROWS);
    expect(wide.length).toBeGreaterThan(10);
    // Only the prefill carried more than one token a row: the governor said no to every draft.
    expect(wide.filter((rows) => rows.some((n) => n > 1)).length).toBe(1);
    expect(governor.asked.some((b) => b >= GOVERNED_FROM_ROWS)).toBe(true);

    governor.asked.length = 0;
    const done = await runContext(s, 'lone', 24);
    expect(done.usage.speculation.acceptedTokens).toBeGreaterThan(0);
    expect(governor.asked).toEqual([]);
  });

  it('below 16 rows holds a batch to the governor only when a row in it ran plain past 32 tokens', async () => {
    const governor = new RefusingGovernor();
    // A CPU-like pass (a token costs a tenth of a pass's fixed cost): extra
    // tokens are nearly free up to 3 rows only.
    const cpuLike = new CostModel({ fixed: 0.2, perRow: 0.01, perPaddedToken: 0.01, perToken: 0, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });
    expect(new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 16 }).kneeTokens).toBe(12);
    const s = wideScheduler(cpuLike, governor);
    // Four rows that draft from their first step: no vote, and they speculate.
    const fresh = await Promise.all(Array.from({ length: 4 }, (_, i) => runContext(s, `fresh${i}`, 40)));
    expect(fresh.every((e) => e.usage.speculation.drafts > 0)).toBe(true);
    expect(governor.asked).toEqual([]);
    // 20 rows: the wide batch runs plain (the budget's guard); when the 16
    // short ones end, the four left ran plain past 32 tokens and their narrow
    // batch is put to the vote (and refused).
    const short = Array.from({ length: 16 }, (_, i) => runContext(s, `short${i}`, 40));
    const long = Array.from({ length: 4 }, (_, i) => runContext(s, `long${i}`, 120));
    const ends = await Promise.all([...short, ...long]);
    expect(ends.every((e) => e.usage.speculation.drafts === 0)).toBe(true);
    expect(governor.asked.filter((b) => b === 4).length).toBeGreaterThan(10);
  });

  it('keeps a row that ran plain past 32 tokens plain when it has less left than twice its context', async () => {
    // Wide batches do not speculate; below 16 rows they do, as after a concurrency-8 history.
    class WideRefusingGovernor extends SpeculationGovernor {
      override decide(batch: number): boolean {
        return batch < GOVERNED_FROM_ROWS;
      }
    }
    const s = wideScheduler(gpuLike, new WideRefusingGovernor());
    const run = (id: string, maxTokens: number) => runContext(s, id, maxTokens);
    // 18 rows end at 40 tokens; then 'late' (60 to go, context 76) and 'long' (360 to go) are left.
    const short = Array.from({ length: 18 }, (_, i) => run(`short${i}`, 40));
    const late = run('late', 100);
    const long = run('long', 400);
    const ends = await Promise.all([...short, late, long]);
    expect(ends.every((e) => e.finishReason === 'length')).toBe(true);
    expect((await late).usage.speculation.drafts).toBe(0);
    expect((await long).usage.speculation.drafts).toBeGreaterThan(0);
    // A row that joins the narrow batch drafts from its first step.
    const fresh = await run('fresh', 100);
    expect(fresh.usage.speculation.drafts).toBeGreaterThan(0);
  });

  it('tells the budget which drafting steps ran cold (the first draft after steps without one)', async () => {
    const budget = new RecordingBudget(cost, { policy: 'marginal', maxNodes: 16 });
    const s = scheduler(budget);
    runner.steps = [];
    const c = collect();
    const story = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317];
    s.submit(generateRequestSchema.parse({ id: 'steady', promptIds: [...story, ...story.slice(1)], maxTokens: 40, speculation: 'context' }), c.sink);
    await c.done;
    // A lone row below the knee drafts every step: step 0 (the prefill) builds
    // its drafter (not a drafting cost), step 1 is its first draft after a
    // step without one (cold), and every later step follows a drafting step
    // (the last one or two have no room left to draft into).
    expect(runner.steps.length).toBeGreaterThan(4);
    const drafting = budget.drafts.filter((d) => d.rows > 0);
    expect(drafting.filter((d) => d.cold).map((d) => d.rows)).toEqual([1]);
    const steady = drafting.filter((d) => !d.cold).length;
    expect(steady).toBeGreaterThanOrEqual(runner.steps.length - 3);
    expect(steady).toBeLessThanOrEqual(runner.steps.length - 2);
  });

  it('drafts about as many nodes as the budget has been sending the row, not always the cap', async () => {
    /** Sends at most `sendAtMost` nodes per row. */
    class StingyBudget extends TreeBudget {
      sendAtMost = 2;
      override allocate(rows: readonly BudgetRow[], out: Int32Array, maxPast?: number, method?: string): void {
        super.allocate(rows, out, maxPast, method);
        for (let r = 0; r < rows.length; r++) out[r] = Math.min(rows[r].available, this.sendAtMost);
      }
    }
    const budget = new StingyBudget(cost, { policy: 'marginal', maxNodes: 16 });
    const asked: number[] = [];
    const expectedLengths: (number | undefined)[] = [];
    const factory = drafterFactory(null);
    const s = new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget,
      metrics: new PoolMetrics(),
      maxTreeNodes: 16,
      createDrafter: (request, expectedLength) => {
        expectedLengths.push(expectedLength);
        const inner = factory(request, expectedLength)!;
        return {
          draft: (n: number) => {
            asked.push(n);
            return inner.draft(n);
          },
          accept: (tokens: ArrayLike<number>) => inner.accept(tokens),
          pushEdgeTrie: (trie: Uint8Array, outputLength: number) => inner.pushEdgeTrie(trie, outputLength),
          get edgeTrieExhausted() {
            return inner.edgeTrieExhausted;
          },
        };
      },
    });
    const story = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317];
    const prompt = [...story, ...story.slice(1), ...story.slice(1)];
    const c = collect();
    s.submit(generateRequestSchema.parse({ id: 'stingy', promptIds: prompt, maxTokens: 60, speculation: 'context' }), c.sink);
    await c.done;
    // The drafter is told how long the generation may get (it sizes its context trie by it).
    expect(expectedLengths).toEqual([prompt.length + 60]);
    // The first draft asks for the cap; once the budget has sent 2 a step for a few steps, ceil(2 · 1.25) + 2 = 5.
    expect(asked[0]).toBe(16);
    expect(asked.length).toBeGreaterThan(8);
    expect(Math.max(...asked.slice(8))).toBeLessThanOrEqual(5);
    expect(asked.filter((n) => n === 5).length).toBeGreaterThan(4);
  });

  it("keeps trees within the operator's cap for the running batch size, and drafts nothing from disable_by_batch_size", async () => {
    const s = new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics: new PoolMetrics(),
      maxTreeNodes: 16,
      batchSizeCaps: new BatchSizeCaps(16, { '2': 3 }, 3),
      createDrafter: drafterFactory(null),
    });
    const ids = (evs: PoolEvent[]): number[] => evs.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    const run = (k: number): Promise<PoolEvent[][]> =>
      Promise.all(
        Array.from({ length: k }, (_, i) => {
          const c = collect();
          s.submit(generateRequestSchema.parse({ id: `cap${k}-${i}`, promptIds: REPEATING_PROMPT, maxTokens: 48, speculation: 'context' }), c.sink);
          return c.done;
        }),
      );
    // Decode steps only: a prefill row carries the whole prompt.
    const decodeRows = (rows: number): number[][] => runner.steps.filter((r) => r.length === rows && r.every((t) => t < REPEATING_PROMPT.length));
    runner.steps = [];
    const [alone] = await run(1);
    expect(Math.max(...decodeRows(1).flat())).toBeGreaterThan(1 + 3);
    runner.steps = [];
    const pair = await run(2);
    expect(decodeRows(2).length).toBeGreaterThan(5);
    expect(Math.max(...decodeRows(2).flat())).toBeLessThanOrEqual(1 + 3);
    expect(Math.max(...decodeRows(2).flat())).toBeGreaterThan(1);
    runner.steps = [];
    const three = await run(3);
    expect(decodeRows(3).length).toBeGreaterThan(5);
    expect(decodeRows(3).flat().every((t) => t === 1)).toBe(true);
    // Capped or not, the same greedy text.
    for (const events of [...pair, ...three]) expect(ids(events)).toEqual(ids(alone));
  });

  it('drafting faults cost speculation, never output: a failed pass runs again plainly, a drafter that throws is dropped', async () => {
    const metrics = new PoolMetrics();
    const factory = drafterFactory(null);
    const vocab = runner.config.vocabSize;
    let corrupted = 0;
    const s = new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics,
      maxTreeNodes: 16,
      createDrafter: (request, expectedLength) => {
        const inner = factory(request, expectedLength)!;
        if (request.id === 'beside') return inner;
        // Drafters with faults: trees naming a token the model does not have
        // (every other one), a draft() that throws, an accept() that throws.
        let drafts = 0;
        let accepts = 0;
        return {
          draft: (n: number) => {
            const tree = inner.draft(n);
            if (request.id === 'bad-tokens' && tree.size > 1 && drafts % 2 === 0) {
              tree.tokens[1] = vocab + 7;
              corrupted++;
            }
            if (request.id === 'throws-in-draft' && drafts === 2) throw new Error('draft fault');
            drafts++;
            return tree;
          },
          accept: (tokens: ArrayLike<number>) => {
            if (request.id === 'throws-in-accept' && ++accepts === 3) throw new Error('accept fault');
            inner.accept(tokens);
          },
          pushEdgeTrie: (trie: Uint8Array, outputLength: number) => inner.pushEdgeTrie(trie, outputLength),
          get edgeTrieExhausted() {
            return inner.edgeTrieExhausted;
          },
        };
      },
    });
    const run = async (id: string, speculation: 'off' | 'context') => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 60, speculation }), c.sink);
      const events = await c.done;
      const tokens = events.filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
      return { ids: tokens.flatMap((e) => e.ids), steps: tokens.length, last: events.at(-1) };
    };
    const plain = await run('plain', 'off');
    const runs = await Promise.all(['bad-tokens', 'throws-in-draft', 'throws-in-accept', 'beside'].map((id) => run(id, 'context')));
    expect(corrupted).toBeGreaterThan(0);
    const failures = Object.fromEntries((await metrics.draftFailures.get()).values.map((v) => [String(v.labels.kind), v.value]));
    expect(failures.pass).toBeGreaterThan(0);
    expect(failures.drafter).toBe(2);
    for (const r of runs) {
      expect(r.last).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(r.ids).toEqual(plain.ids);
    }
    // The row beside them still speculated: fewer steps than tokens.
    expect(runs[3].steps).toBeLessThan(60);
  });

  it("a fault in one row's acceptance or stream ends that generation alone", async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const run = (id: string, speculation: 'off' | 'context', failAtTokens = 0): Promise<PoolEvent[]> => {
      const events: PoolEvent[] = [];
      let tokens = 0;
      return new Promise((resolve) => {
        s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 48, speculation }), {
          send: (e) => {
            // A stream that breaks in the middle of a step's emission.
            if (e.type === 'tokens' && ++tokens === failAtTokens) throw new Error('stream fault');
            events.push(e);
          },
          end: () => resolve(events),
        });
      });
    };
    const plain = await run('plain', 'off');
    const [broken, a, b] = await Promise.all([run('broken', 'context', 3), run('a', 'context'), run('b', 'off')]);
    expect(broken.at(-1)).toMatchObject({ type: 'error', code: 'internal' });
    expect((broken.at(-1) as Extract<PoolEvent, { type: 'error' }>).message).toMatch(/stream fault/);
    const ids = (events: PoolEvent[]): number[] => events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    for (const r of [a, b]) {
      expect(r.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(ids(r)).toEqual(ids(plain));
    }
  });

  it.each([
    ['host keys/values (results kept per pass)', true],
    ['device-resident keys/values (only the latest pass commits)', false],
  ])('a plain pass that fails ends only the generations that fail alone; one that fails once is run again: %s', async (_, keepsStepResults) => {
    // The real runner, failing as onnxruntime would for one sequence it cannot
    // take (every pass that holds it, from its prefill on) or, once, for a
    // whole batch. The prefill that poisons a sequence: the prompt below.
    const POISON = [1, 499, 499, 499, 499, 499];
    const poisoned = new WeakSet<SequenceKvCache>();
    let failBatchOnce = false;
    let singleRowPasses = 0;
    const faulty = failingRunner(keepsStepResults, (rows) => {
      if (rows.length === 1) singleRowPasses++;
      for (const { cache, row } of rows) if (POISON.every((t, i) => row.tokens[i] === t)) poisoned.add(cache);
      if (rows.some((r) => poisoned.has(r.cache))) throw new Error('onnxruntime: cannot run this sequence');
      if (failBatchOnce && rows.length > 1) {
        failBatchOnce = false;
        throw new Error('onnxruntime: transient fault');
      }
    });
    const metrics = new PoolMetrics();
    const s = new Scheduler(faulty, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics,
      createDrafter: drafterFactory(null),
    });
    const run = async (id: string, promptIds: number[], speculation: 'off' | 'context') => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds, maxTokens: 40, speculation }), c.sink);
      const events = await c.done;
      return { ids: events.flatMap((e) => (e.type === 'tokens' ? e.ids : [])), last: events.at(-1) };
    };
    const failures = () => passFailureCounts(metrics);
    const plain = await run('plain', REPEATING_PROMPT, 'off');

    // The poisoned prefill joins seven others in one pass.
    const before = singleRowPasses;
    const [bad, ...good] = await Promise.all([
      run('a', REPEATING_PROMPT, 'context'),
      run('b', REPEATING_PROMPT, 'off'),
      run('c', REPEATING_PROMPT, 'context'),
      run('poisoned', POISON, 'off'),
      run('d', REPEATING_PROMPT, 'off'),
      run('e', REPEATING_PROMPT, 'context'),
      run('f', REPEATING_PROMPT, 'off'),
      run('g', REPEATING_PROMPT, 'off'),
    ]).then(([a, b, c, poisoned, ...rest]) => [poisoned, a, b, c, ...rest]);
    expect(bad.last).toMatchObject({ type: 'error', code: 'internal' });
    expect((bad.last as Extract<PoolEvent, { type: 'error' }>).message).toMatch(/cannot run this sequence/);
    for (const r of good) {
      expect(r.last).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(r.ids).toEqual(plain.ids);
    }
    expect(await failures()).toEqual({ isolated: 1 });
    // Found by halving (8 → 4 → 2 → 1 rows): two rows ran alone, the poisoned one and
    // its neighbour, where probing each row alone took eight.
    expect(singleRowPasses - before).toBe(2);

    // A fault of the batch, not of a row: the pass runs again and nobody is lost.
    failBatchOnce = true;
    const again = await Promise.all([run('h', REPEATING_PROMPT, 'off'), run('i', REPEATING_PROMPT, 'off')]);
    expect(failBatchOnce).toBe(false);
    for (const r of again) expect(r.ids).toEqual(plain.ids);
    expect(await failures()).toEqual({ isolated: 1, retried: 1 });

    // A lone generation the runtime cannot take ends, and the pool serves the next one.
    const alone = await run('poisoned-alone', POISON, 'off');
    expect(alone.last).toMatchObject({ type: 'error', code: 'internal' });
    expect(await failures()).toEqual({ isolated: 1, retried: 1, batch: 1 });
    expect((await run('after', REPEATING_PROMPT, 'off')).ids).toEqual(plain.ids);
  });

  it('says what ended each generation: an error by its code (counted), a cancel by its source; whole-batch failures in a row until a pass goes through; ended ids remembered', async () => {
    let failEveryPass = false;
    const faulty = failingRunner(true, () => {
      if (failEveryPass) throw new Error('onnxruntime: device lost');
    });
    const metrics = new PoolMetrics();
    const summaries: FinishedGeneration[] = [];
    const s = new Scheduler(faulty, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: null,
      metrics,
      createDrafter: drafterFactory(null),
      onFinished: (g) => summaries.push(g),
    });
    const errorCounts = async () => Object.fromEntries((await metrics.generationErrors.get()).values.map((v) => [String(v.labels.code), v.value]));
    expect(await errorCounts()).toEqual({ bad_request: 0, internal: 0 });
    const start = (id: string, maxTokens = 40) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens, speculation: 'off' }), c.sink);
      return c.done;
    };

    failEveryPass = true;
    for (const id of ['lost-1', 'lost-2', 'lost-3']) {
      expect((await start(id)).at(-1)).toMatchObject({ type: 'error', code: 'internal' });
      expect(s.stats().batchFailuresInARow).toBe(Number(id.slice(-1)));
    }
    expect(await errorCounts()).toEqual({ bad_request: 0, internal: 3 });
    expect(summaries.find((g) => g.id === 'lost-1')).toMatchObject({ finishReason: 'error', error: { code: 'internal', message: expect.stringMatching(/device lost/) } });
    expect(s.stats().batchFailedMsAgo).toBeGreaterThanOrEqual(0);
    failEveryPass = false;
    expect((await start('after', 4)).at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
    expect(s.stats()).toMatchObject({ batchFailuresInARow: 0, batchFailedMsAgo: null });
    expect(summaries.find((g) => g.id === 'after')).not.toHaveProperty('error');

    // A cancel says where it came from.
    const deleted = start('deleted', 400);
    expect(s.cancel('deleted', false, 'delete')).toBe(true);
    await deleted;
    const shutDown = start('shut-down', 400);
    await s.close();
    await shutDown;
    expect(summaries.find((g) => g.id === 'deleted')).toMatchObject({ finishReason: 'cancelled', cancelReason: 'delete' });
    expect(summaries.find((g) => g.id === 'shut-down')).toMatchObject({ finishReason: 'cancelled', cancelReason: 'shutdown' });

    // Ended, however: a cancel of them finds nothing to cancel, but the pool knows they were here.
    expect(s.cancel('deleted')).toBe(false);
    for (const id of ['lost-1', 'after', 'deleted', 'shut-down']) expect(s.endedRecently(id)).toBe(true);
    expect(s.endedRecently('never-sent')).toBe(false);
  });

  it('a batch too big for the runtime memory finishes each step in smaller passes, with the same output, as pasts and trees grow', async () => {
    // The real runner, refusing passes over a memory's worth of padded positions
    // (rows × (longest past + most new tokens)) as a device would: 3 prompts fit, 4 do not.
    const L = REPEATING_PROMPT.length;
    const memory = 3.5 * L;
    let refused = 0;
    const limited = (keepsStepResults: boolean): BatchRunner<SequenceKvCache> =>
      failingRunner(keepsStepResults, (rows) => {
        const past = Math.max(...rows.map((r) => r.cache.length));
        const tokens = Math.max(...rows.map((r) => r.row.tokens.length));
        if (rows.length * (past + tokens) > memory) {
          refused++;
          throw new Error('onnxruntime: failed to allocate memory');
        }
      });
    const serve = async (keepsStepResults: boolean) => {
      const metrics = new PoolMetrics();
      const s = new Scheduler(limited(keepsStepResults), {
        limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
        budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
        metrics,
        createDrafter: drafterFactory(null),
      });
      const run = async (id: string, speculation: 'off' | 'context') => {
        const c = collect();
        s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 24, speculation }), c.sink);
        const events = await c.done;
        return { ids: events.flatMap((e) => (e.type === 'tokens' ? e.ids : [])), last: events.at(-1) };
      };
      const plain = await run('plain', 'off');
      const six = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => run(id, i % 2 ? 'context' : 'off')));
      const failures = await passFailureCounts(metrics);
      const draftFaults = (await metrics.draftFailures.get()).values.reduce((sum, v) => sum + v.value, 0);
      const cap = (await metrics.passPositionCap.get()).values[0]?.value ?? 0;
      return { plain, six, failures, draftFaults, cap, after: await run('after', 'off') };
    };

    const host = await serve(true);
    const refusedOnHost = refused;
    for (const r of host.six) {
      expect(r.last).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(r.ids).toEqual(host.plain.ids);
    }
    expect(host.failures).not.toHaveProperty('batch');
    expect(host.failures).not.toHaveProperty('isolated');
    // The drafts were not what failed: no drafting fault is counted.
    expect(host.draftFaults).toBe(0);
    // The first two steps (the prompts, then one token a row) failed as a whole and
    // finished in halves of 3 rows; passes then take at most the second's 3 × (L + 1)
    // positions. The ~20 steps after, with trees of up to 17 tokens and pasts growing
    // to L + 24, split further instead of failing first (a cap of 3 rows would let
    // 3 rows of trees through, and they fail).
    expect(host.failures).toEqual({ retried: 2 });
    expect(host.cap).toBe(3 * (L + 1));
    // Refused: the first two steps' full passes (with drafts, then without them where there were drafts).
    expect(refusedOnHost).toBeGreaterThanOrEqual(2);
    expect(refusedOnHost).toBeLessThanOrEqual(4);

    // Resident keys/values commit from one pass only: the six end with a clear error, and the pool serves on.
    const resident = await serve(false);
    for (const r of resident.six) {
      expect(r.last).toMatchObject({ type: 'error', code: 'internal' });
      expect((r.last as Extract<PoolEvent, { type: 'error' }>).message).toMatch(/failed to allocate memory/);
    }
    expect(resident.failures).toEqual({ batch: 1 });
    expect(resident.after.ids).toEqual(host.plain.ids);
  });

  it(`doubles the pass cap every ${CAP_PROBE_STEPS} capped steps once the runtime takes more, until the batch runs whole`, async () => {
    const L = REPEATING_PROMPT.length;
    let tight = true;
    const metrics = new PoolMetrics();
    const s = new Scheduler(
      failingRunner(true, (rows) => {
        const past = Math.max(...rows.map((r) => r.cache.length));
        const tokens = Math.max(...rows.map((r) => r.row.tokens.length));
        if (tight && rows.length * (past + tokens) > 2.5 * (L + 1)) throw new Error('onnxruntime: failed to allocate memory');
      }),
      { limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 }, budget: null, metrics, createDrafter: drafterFactory(null) },
    );
    const cap = async () => (await metrics.passPositionCap.get()).values[0]?.value ?? 0;
    const streams = ['a', 'b', 'c', 'd'].map((id) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens: 5 * CAP_PROBE_STEPS, speculation: 'off' }), c.sink);
      return c;
    });
    // Capped at what went through after the first steps (two rows, or one row beside prompts); then the memory is there again.
    while (streams[0].events.filter((e) => e.type === 'tokens').length < 4) await new Promise((r) => setImmediate(r));
    const first = await cap();
    expect(first).toBeGreaterThan(L);
    expect(first).toBeLessThanOrEqual(2.5 * (L + 1));
    tight = false;
    // The cap as it moves: doubled at each probe while the four rows' pass (their pasts
    // growing a position a step) is still bigger, then none (0).
    const seen = [first];
    let finished = false;
    const ends = Promise.all(streams.map((c) => c.done)).finally(() => (finished = true));
    while (!finished) {
      const now = await cap();
      if (now !== seen.at(-1)) seen.push(now);
      await new Promise((r) => setImmediate(r));
    }
    expect(seen.at(-1)).toBe(0);
    const raised = seen.slice(0, -1);
    expect(raised.length).toBeGreaterThan(1);
    raised.forEach((value, i) => expect(value).toBe(first * 2 ** i));
    const ids = (evs: PoolEvent[]): number[] => evs.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    for (const e of await ends) {
      expect(e.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(ids(e)).toEqual(ids((await ends)[0]));
    }
  });

  it("records each request's queueing, first token, gaps between token events and end, as vLLM names them", async () => {
    const metrics = new PoolMetrics();
    const s = new Scheduler(runner, {
      limits: { maxActive: 1, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics,
      createDrafter: drafterFactory(null),
    });
    const run = (id: string, speculation: 'off' | 'context', maxTokens: number) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: REPEATING_PROMPT, maxTokens, speculation }), c.sink);
      return c;
    };
    // One slot: the second waits for the first, the third is cancelled while it waits.
    const a = run('a', 'off', 10);
    const b = run('b', 'context', 40);
    const cancelled = run('c', 'off', 10);
    s.cancel('c');
    const [aEvents, bEvents] = await Promise.all([a.done, b.done, cancelled.done]);
    const tokenEvents = (events: PoolEvent[]) => events.filter((e) => e.type === 'tokens').length;
    expect(tokenEvents(aEvents)).toBe(10);
    expect(tokenEvents(bEvents)).toBeLessThan(40);
    const count = async (h: { get(): Promise<{ values: Array<{ metricName?: string; value: number }> }> }) =>
      (await h.get()).values.find((v) => v.metricName?.endsWith('_count'))!.value;
    const sum = async (h: { get(): Promise<{ values: Array<{ metricName?: string; value: number }> }> }) =>
      (await h.get()).values.find((v) => v.metricName?.endsWith('_sum'))!.value;
    expect(await count(metrics.queueTime)).toBe(2);
    expect(await count(metrics.timeToFirstToken)).toBe(2);
    expect(await count(metrics.interTokenLatency)).toBe(tokenEvents(aEvents) - 1 + tokenEvents(bEvents) - 1);
    expect(await count(metrics.e2eLatency)).toBe(2);
    // b waited in the queue for a's whole run: its wait is most of the queue time recorded.
    expect(await sum(metrics.queueTime)).toBeGreaterThan(0);
    expect(await sum(metrics.e2eLatency)).toBeGreaterThan(await sum(metrics.timeToFirstToken));
  });

  it('finished and cancelled generations release their caches', async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    runner.created = [];
    const runs = [0, 1, 2].map((i) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id: `r${i}`, promptIds: [1, 403], maxTokens: 200, speculation: i === 0 ? 'off' : 'context' }), c.sink);
      return c;
    });
    while (runs[2].events.filter((e) => e.type === 'tokens').length < 3) await new Promise((r) => setImmediate(r));
    expect(s.cancel('r2')).toBe(true);
    const ends = await Promise.all(runs.map((r) => r.done));
    expect((ends[2].at(-1) as Extract<PoolEvent, { type: 'done' }>).finishReason).toBe('cancelled');
    expect(runner.created.length).toBe(3);
    expect(runner.created.every((c) => c.isReleased)).toBe(true);
    expect(s.stats()).toMatchObject({ active: 0, queued: 0, reservedTokens: 0 });
    // Greedy output does not depend on the method.
    const ids = (evs: PoolEvent[]): number[] => evs.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    expect(ids(ends[1])).toEqual(ids(ends[0]));
    // Their drafters' context tries went back too: the next request of the same length takes one.
    const reused = contextTriePool.reused;
    const next = collect();
    s.submit(generateRequestSchema.parse({ id: 'r3', promptIds: [1, 403], maxTokens: 200, speculation: 'context' }), next.sink);
    expect(ids(await next.done)).toEqual(ids(ends[0]));
    expect(contextTriePool.reused).toBe(reused + 1);
  });

  it('a generation whose memory cannot be had fails alone, at admission or when its cache is kept; the pool serves on', async () => {
    // The real runner, whose next allocations fail as a full heap's do (RangeError: Array buffer allocation failed).
    let failAllocations = 0;
    const starved: BatchRunner<SequenceKvCache> = {
      get config() {
        return runner.config;
      },
      newSequence: (capacity) => {
        if (failAllocations > 0) {
          failAllocations -= 1;
          throw new RangeError('Array buffer allocation failed');
        }
        return runner.newSequence(capacity);
      },
      copyPrefix: (from, to, length) => runner.inner.copyPrefix(from, to, length),
      step: (rows) => runner.step(rows),
    };
    const s = new Scheduler(starved, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics: new PoolMetrics(),
      createDrafter: drafterFactory(null),
      prefixCache: new PrefixCache<SequenceKvCache>({ maxBytes: 64 << 20, bytesOf: (q) => q.byteLength }),
    });
    const ids = (evs: PoolEvent[]): number[] => evs.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
    const submit = (id: string, maxTokens: number) => {
      const c = collect();
      s.submit(generateRequestSchema.parse({ id, promptIds: STORY, maxTokens, speculation: 'context' }), c.sink);
      return c;
    };
    const alone = ids(await submit('alone', 40).done);

    // At admission: the first of three gets no cache.
    failAllocations = 1;
    const runs = ['a', 'b', 'c'].map((id) => submit(id, 40));
    const [a, b, c] = await Promise.all(runs.map((r) => r.done));
    expect(a.at(-1)).toMatchObject({ type: 'error', code: 'internal', message: expect.stringContaining('Array buffer allocation failed') });
    expect(ids(b)).toEqual(alone);
    expect(ids(c)).toEqual(alone);

    // When its cache is kept: a generation cancelled far short of its reservation is compacted into a new
    // sequence first, and that allocation fails. Its stream still ends, with its `done`.
    const long = submit('long', 400);
    while (long.events.filter((e) => e.type === 'tokens').length < 2) await new Promise((r) => setImmediate(r));
    failAllocations = 1;
    s.cancel('long');
    expect((await long.done).at(-1)).toMatchObject({ type: 'done', finishReason: 'cancelled' });
    expect(failAllocations).toBe(0);
    expect(s.stats()).toMatchObject({ active: 0, queued: 0, reservedTokens: 0 });
    expect(ids(await submit('after', 40).done)).toEqual(alone);
  });

  it('rows whose drafts are rarely accepted back off and probe, counted in the metrics; rows whose drafts pay draft on; outputs are plain decoding\'s', async () => {
    // Dear tokens (a fifth of a pass each): a row must have over ~40% of the draft tokens it sends accepted to pay for
    // them. The budget sends every row all it drafted, and learns no overhead from the machine's timing: only the
    // rows' own records decide who drafts.
    class SendingBudget extends TreeBudget {
      override allocate(rows: readonly BudgetRow[], out: Int32Array): void {
        for (let r = 0; r < rows.length; r++) out[r] = rows[r].available;
      }
      override observeStep(): void {}
    }
    const dear = new CostModel({ fixed: 0.3, perRow: 0, perPaddedToken: 0, perToken: 0.06, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });
    const skipsOf = async (metrics: PoolMetrics): Promise<{ unpaid?: number; resting?: number; probes: number }> => ({
      ...(Object.fromEntries((await metrics.draftSkips.get()).values.map((v) => [String(v.labels.reason), v.value])) as { unpaid?: number; resting?: number }),
      probes: (await metrics.draftProbes.get()).values[0].value,
    });
    const run = async (promptIds: number[], speculation: 'pld' | 'sssd', predictionIds?: number[]) => {
      const metrics = new PoolMetrics();
      const s = scheduler(new SendingBudget(dear, { policy: 'marginal', maxNodes: 16 }), metrics);
      const c = collect();
      s.submit(generateRequestSchema.parse({ id: speculation, promptIds, maxTokens: 160, speculation, ...(predictionIds ? { predictionIds } : {}) }), c.sink);
      const events = await c.done;
      return { ids: tokensOf(events), done: events.at(-1) as Extract<PoolEvent, { type: 'done' }>, skips: await skipsOf(metrics) };
    };
    // Every series is there from the start.
    expect(await skipsOf(new PoolMetrics())).toEqual({ unpaid: 0, resting: 0, probes: 0 });
    const random = [1, 97, 23, 401, 288, 19, 350, 77, 461, 5, 233, 142, 310, 66, 499, 12];
    const plain = await plainIds(random, 160);
    // `pld` on a prompt of random ids: its drafts are accepted at a few percent (8% when this was written).
    const pld = await run(random, 'pld');
    expect(pld.ids).toEqual(plain);
    const { speculation } = pld.done.usage;
    expect(speculation.acceptedTokens).toBeLessThan(0.15 * speculation.draftTokens);
    // Backed off most of the way, with probes now and then, fewer as they fail: fewer than one every 8th step.
    const unpaid = pld.skips.unpaid ?? 0;
    expect(unpaid).toBeGreaterThan(speculation.steps / 2);
    expect(pld.skips.probes).toBeGreaterThan(0);
    expect(pld.skips.probes).toBeLessThan(unpaid / 8);
    expect(speculation.drafts).toBeLessThan(speculation.steps / 3);
    // The same prompt with its output predicted: drafts that pay, every step, never backed off.
    const predicted = await run(random, 'sssd', plain);
    expect(predicted.ids).toEqual(plain);
    // A dip (a step with little accepted) may back it off; its next probe, accepted, resumes it.
    expect(predicted.skips.unpaid).toBeLessThanOrEqual(2);
    expect(predicted.skips.resting).toBe(0);
    expect(predicted.done.usage.speculation.meanAcceptanceLength).toBeGreaterThan(4);
  });

  it('a context-trie drafter speculates: multi-token steps, fewer passes than tokens', async () => {
    const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
    const c = collect();
    // A repetitive prompt: the context trie predicts its continuation.
    const story = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317];
    s.submit(generateRequestSchema.parse({ id: 'ctx', promptIds: [...story, ...story.slice(1), ...story.slice(1, 8)], maxTokens: 64, speculation: 'context' }), c.sink);
    const events = await c.done;
    const done = events.at(-1) as Extract<PoolEvent, { type: 'done' }>;
    expect(done.usage.speculation.acceptedTokens).toBeGreaterThan(0);
    expect(done.usage.speculation.steps).toBeLessThan(done.usage.completionTokens);
  });


  it("accounts the pool's time by phase, idle and between steps included, adding up to its uptime", async () => {
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    const metrics = new PoolMetrics();
    const born = performance.now();
    const s = new Scheduler(runner, {
      limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
      budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
      metrics,
      createDrafter: drafterFactory(null),
    });
    const phases = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await metrics.phaseSeconds.get()).values.map((v) => [String(v.labels.phase), v.value]));
    await sleep(40);
    // A scrape while nothing ever ran: the wait so far is idle time.
    const before = await phases();
    expect(before.idle).toBeGreaterThanOrEqual(0.035);
    const c = collect();
    s.submit(generateRequestSchema.parse({ id: 'phases', promptIds: REPEATING_PROMPT, maxTokens: 40, speculation: 'context' }), c.sink);
    await c.done;
    // Let the loop wind down after the last step (on a loaded machine that took over 10 ms).
    await sleep(20);
    const ended = await phases();
    await sleep(40);
    const after = await phases();
    for (const phase of ['draft', 'forward', 'accept', 'between']) expect(after[phase], phase).toBeGreaterThan(0);
    // The wait after the request is idle time too, though no request ended it.
    expect(after.idle - ended.idle).toBeGreaterThanOrEqual(0.035);
    const uptime = (performance.now() - born) / 1000;
    const sum = Object.values(after).reduce((a, b) => a + b, 0);
    // The stretches are contiguous; what is missing is the test's own few statements around them.
    expect(sum).toBeLessThanOrEqual(uptime);
    expect(sum).toBeGreaterThan(uptime * 0.85);
  });
  describe('edge tries', () => {
    const prompt = [1, 403, 407, 261, 378, 432, 383];
    /** A chain trie rooted at `root` predicting `next` (p = 1 each), base64. */
    const chain = (root: number, next: number[]): string =>
      Buffer.from(encodeEdgeTrie([root, ...next], [-1, ...next.map((_, i) => i)], [1, ...next.map(() => 1)])).toString('base64');
    const edgeTokens = (evs: PoolEvent[]): number => evs.reduce((n, e) => n + (e.type === 'tokens' ? e.sources.filter((x) => x === 'edge').length : 0), 0);
    const hints = (evs: PoolEvent[]): Extract<PoolEvent, { type: 'trie-exhausted' }>[] =>
      evs.filter((e): e is Extract<PoolEvent, { type: 'trie-exhausted' }> => e.type === 'trie-exhausted');

    let greedy: number[] = [];
    beforeAll(async () => {
      const c = collect();
      scheduler(null).submit(generateRequestSchema.parse({ id: 'ref', promptIds: prompt, maxTokens: 48, speculation: 'off' }), c.sink);
      greedy = tokensOf(await c.done);
    });

    it('a trie that paid is followed, then the edge is asked for a fresh one, which is followed again', async () => {
      const metrics = new PoolMetrics();
      const s = new Scheduler(runner, {
        limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
        budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
        metrics,
        createDrafter: drafterFactory(null),
      });
      const c = collect();
      const request = generateRequestSchema.parse({ id: 'edge-1', promptIds: prompt, maxTokens: 48, speculation: 'sssd', trie: chain(prompt.at(-1)!, greedy.slice(0, 10)) });
      let pushed = false;
      s.submit(request, {
        send: (e) => {
          c.sink.send(e);
          // As the edge does on the hint: a trie for prompt + output so far.
          if (e.type === 'trie-exhausted' && !pushed) {
            pushed = true;
            const at = e.outputLength;
            expect(s.pushTrie('edge-1', Buffer.from(chain(greedy[at - 1], greedy.slice(at, at + 12)), 'base64'), at)).toBe(true);
          }
        },
        end: () => c.sink.end(),
      });
      const events = await c.done;
      expect(tokensOf(events)).toEqual(greedy);
      expect(await metrics.trieHints.get().then((m) => m.values[0]?.value ?? 0)).toBe(hints(events).length);
      const hint = hints(events)[0];
      expect(hint?.outputLength).toBeGreaterThanOrEqual(10);
      // Tokens came from the first trie and from the pushed one.
      expect(edgeTokens(events)).toBeGreaterThan(12);
    });

    it('refuses a pushed trie for output the generation has not written, which it could never follow', async () => {
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
      const c = collect();
      s.submit(generateRequestSchema.parse({ id: 'edge-ahead', promptIds: prompt, maxTokens: 48, speculation: 'sssd' }), c.sink);
      const trie = Buffer.from(chain(greedy[4], greedy.slice(5, 10)), 'base64');
      expect(() => s.pushTrie('edge-ahead', trie, 5)).toThrow(/outputLength 5 is past the generation's output \(0 tokens so far\)/);
      expect(s.pushTrie('edge-ahead', Buffer.from(chain(prompt.at(-1)!, greedy.slice(0, 5)), 'base64'), 0)).toBe(true);
      expect(tokensOf(await c.done)).toEqual(greedy);
    });

    it('takes a push unread for a method that reads no tries, and refuses one past the node cap where tries are read', async () => {
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
      const junk = new Uint8Array([1, 2, 3]);
      const runs = (['pld', 'context', 'off', 'sssd'] as const).map((speculation) => {
        const c = collect();
        s.submit(generateRequestSchema.parse({ id: `reads-${speculation}`, promptIds: prompt, maxTokens: 48, speculation }), c.sink);
        return c;
      });
      // Not decoded, nor checked: bytes that are no trie at all are taken (review h174: every push cost a decode).
      for (const speculation of ['pld', 'context', 'off']) {
        expect(s.trieReader(`reads-${speculation}`)).toBe('ignores');
        expect(s.pushTrie(`reads-${speculation}`, junk, 0)).toBe(true);
      }
      expect(s.trieReader('reads-sssd')).toBe('follows');
      expect(() => s.pushTrie('reads-sssd', junk, 0)).toThrow(/trie: 3 bytes are shorter than a trie's header/);
      const nodes = MAX_PUSHED_TRIE_NODES + 1;
      const big = encodeEdgeTrie(Array.from({ length: nodes }, (_, i) => (i === 0 ? prompt.at(-1)! : greedy[0])), Array.from({ length: nodes }, (_, i) => i - 1), new Array<number>(nodes).fill(0.9));
      expect(() => s.pushTrie('reads-sssd', big, 0)).toThrow(`trie: ${nodes} nodes; a pushed trie holds at most ${MAX_PUSHED_TRIE_NODES}`);
      for (const run of runs) expect(tokensOf(await run.done)).toEqual(greedy);
      expect(s.trieReader('reads-sssd')).toBeNull();
    });

    it('builds no drafter for a row with no room to draft (max_tokens 1, a prompt filling the context), and drops one once its room is gone: the same greedy text', async () => {
      const factory = drafterFactory(null);
      /** Per generation: drafters made, draft sizes asked, tokens fed, releases. */
      const seen = new Map<string, { made: number; asked: number[]; fed: number; released: number }>();
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }), new PoolMetrics(), {
        createDrafter: (request, expectedLength) => {
          const inner = factory(request, expectedLength)!;
          const record = seen.get(request.id) ?? { made: 0, asked: [], fed: 0, released: 0 };
          seen.set(request.id, record);
          record.made++;
          return {
            shippedTrie: inner.shippedTrie,
            draft: (n: number) => {
              record.asked.push(n);
              return inner.draft(n);
            },
            accept: (tokens: ArrayLike<number>) => {
              record.fed += tokens.length;
              inner.accept(tokens);
            },
            pushEdgeTrie: (trie: Uint8Array, outputLength: number) => inner.pushEdgeTrie(trie, outputLength),
            get edgeTrieExhausted() {
              return inner.edgeTrieExhausted;
            },
            release: () => {
              record.released++;
              inner.release?.();
            },
          };
        },
      });
      const trie = chain(prompt.at(-1)!, greedy.slice(0, 10));
      const full = [1, ...Array.from({ length: runner.config.contextLength - 1 }, (_, i) => greedy[i % greedy.length])];
      const runs = [
        { id: 'room-none', promptIds: prompt, maxTokens: 1 },
        { id: 'room-context', promptIds: full, maxTokens: 4 },
        { id: 'room-three', promptIds: prompt, maxTokens: 4 },
      ].map(({ id, promptIds, maxTokens }) => {
        const c = collect();
        s.submit(generateRequestSchema.parse({ id, promptIds, maxTokens, speculation: 'sssd', trie: promptIds === prompt ? trie : chain(full.at(-1)!, [9]) }), c.sink);
        return c;
      });
      // Made to check the shipped trie, and let go at once: a trie pushed to such a row is taken unread.
      expect(s.trieReader('room-none')).toBe('ignores');
      expect(s.trieReader('room-context')).toBe('ignores');
      expect(s.trieReader('room-three')).toBe('follows');
      const [none, context, three] = await Promise.all(runs.map((c) => c.done));
      for (const id of ['room-none', 'room-context']) expect(seen.get(id)).toEqual({ made: 1, asked: [], fed: 0, released: 1 });
      expect(tokensOf(none)).toEqual(greedy.slice(0, 1));
      expect(tokensOf(context)).toEqual(await plainIds(full, 4));
      expect(tokensOf(three)).toEqual(greedy.slice(0, 4));
      // Asked for no more than the room (4 tokens less the bonus), never fed once the next token was the last, let go once.
      const room = seen.get('room-three')!;
      expect(room.asked.length).toBeGreaterThan(0);
      expect(Math.max(...room.asked)).toBeLessThanOrEqual(3);
      expect(room.fed).toBeLessThanOrEqual(2);
      expect(room.released).toBe(1);
      expect(edgeTokens(three)).toBeGreaterThan(0);
    });

    it('drops a drafter that throws as the hint is looked for (taking the step in), and the output is the same', async () => {
      const factory = drafterFactory(null);
      const s = new Scheduler(runner, {
        limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 100_000 },
        budget: new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }),
        metrics: new PoolMetrics(),
        createDrafter: (request, expectedLength) => {
          const inner = factory(request, expectedLength)!;
          return {
            draft: (n: number) => inner.draft(n),
            accept: (tokens: ArrayLike<number>) => inner.accept(tokens),
            pushEdgeTrie: (trie: Uint8Array, outputLength: number) => inner.pushEdgeTrie(trie, outputLength),
            get edgeTrieExhausted() {
              return inner.edgeTrieExhausted;
            },
            shippedTrie: inner.shippedTrie,
            edgeTrieExhaustedNow: () => {
              throw new Error('accept fault');
            },
          };
        },
      });
      const c = collect();
      s.submit(generateRequestSchema.parse({ id: 'hint-fault', promptIds: prompt, maxTokens: 48, speculation: 'sssd', trie: chain(prompt.at(-1)!, greedy.slice(0, 10)) }), c.sink);
      const events = await c.done;
      expect(events.at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
      expect(tokensOf(events)).toEqual(greedy);
    });

    it('asks for a fresh trie right after the step that leaves the shipped one, not a step later', async () => {
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
      const c = collect();
      s.submit(generateRequestSchema.parse({ id: 'edge-hint', promptIds: prompt, maxTokens: 48, speculation: 'sssd', trie: chain(prompt.at(-1)!, greedy.slice(0, 10)) }), c.sink);
      const events = await c.done;
      const at = events.findIndex((e) => e.type === 'trie-exhausted');
      expect(at).toBeGreaterThan(0);
      const before = events.slice(0, at).filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
      // The step just before the hint is the one whose accepted path ran off the trie's end (its tokens from the edge).
      expect(before.at(-1)!.sources).toContain('edge');
      expect(hints(events)[0].outputLength).toBe(before.reduce((n, e) => n + e.ids.length, 0));
      expect(hints(events)[0].outputLength).toBeGreaterThan(10);
    });

    it("a generation keeps no more of its request than it uses: not the trie's text; predicted tokens past what drafts read are refused", async () => {
      // Queued requests with megabytes of either took a pool's heap past its limit.
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
      const c = collect();
      const predictionIds = Array.from({ length: PREDICTION_TOKENS }, (_, i) => greedy[i % greedy.length]);
      const gen = s.submit(generateRequestSchema.parse({ id: 'lean', promptIds: prompt, maxTokens: 48, speculation: 'sssd', trie: chain(prompt.at(-1)!, greedy.slice(0, 10)), predictionIds }), c.sink);
      expect(gen.request.trie).toBeUndefined();
      expect(gen.request.predictionIds).toHaveLength(PREDICTION_TOKENS);
      // More than drafts read is refused by the schema, before an id is read (review h174: it took 1M and checked each).
      const more = generateRequestSchema.safeParse({ id: 'lean-more', promptIds: prompt, maxTokens: 4, predictionIds: [...predictionIds, 5] });
      expect(more.error?.issues[0].message).toBe(`at most ${PREDICTION_TOKENS} token ids, got ${PREDICTION_TOKENS + 1}`);
      // Every id sent is checked: one outside the vocabulary at the end is refused.
      const past = [...predictionIds.slice(0, PREDICTION_TOKENS - 1), 99_999];
      expect(() => s.submit(generateRequestSchema.parse({ id: 'lean-bad', promptIds: prompt, maxTokens: 4, speculation: 'sssd', predictionIds: past }), collect().sink)).toThrow(/predictionIds\[8191\] = 99999 is outside the vocabulary/);
      const events = await c.done;
      expect(tokensOf(events)).toEqual(greedy);
      // The trie, decoded before its text was dropped, was still followed.
      expect(edgeTokens(events)).toBeGreaterThan(0);
    });

    it('a trie that got nothing accepted does not ask for another', async () => {
      const s = scheduler(new TreeBudget(cost, { policy: 'marginal', maxNodes: 16 }));
      const c = collect();
      // Tokens the model does not continue with: the first draft is rejected at once.
      const wrong = greedy.slice(0, 10).map((t) => (t + 7) % 512);
      s.submit(generateRequestSchema.parse({ id: 'edge-2', promptIds: prompt, maxTokens: 48, speculation: 'sssd', trie: chain(prompt.at(-1)!, wrong) }), c.sink);
      const events = await c.done;
      expect(tokensOf(events)).toEqual(greedy);
      expect(edgeTokens(events)).toBe(0);
      expect(hints(events)).toEqual([]);
    });
  });

  describe('table chains in wide batches', () => {
    const fixtures = readFileSync(models.stories260K.fixtures, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { prompt_ids: number[]; output_ids: number[] });

    /** The model's own next-token table over its greedy continuations of the fixtures (each seen twice). */
    async function fixtureTable(): Promise<NextTokenTable> {
      const b = new NextTokenTableBuilder(runner.config.vocabSize);
      for (const f of fixtures) {
        const text = Int32Array.from([...f.prompt_ids, ...f.output_ids].slice(0, runner.config.contextLength));
        const seq = runner.newSequence(text.length);
        const result = await runner.step([{ cache: seq, row: { tokens: text, parents: Int32Array.from(text, (_, i) => i - 1) } }]);
        for (let pass = 0; pass < 2; pass++) for (let end = 1; end <= text.length; end++) b.add(text, end, result.logitsAt(0, end - 1));
        seq.release();
      }
      return b.build();
    }

    // A CPU's pass: a second token in every row costs a third more. Its knee is
    // 16 tokens, so where the table can chain the fused drafter sits out from 9
    // rows (two tokens a row past the knee); without one, the budget's guard decides (wantsDrafts).
    const cpuLike = new CostModel({ fixed: 0.4, perRow: 0.011, perPaddedToken: 0, perToken: 0.017, perTokenPair: 0, perPastToken: 0, perPastRow: 0 });

    /** A governor that always lets speculation run and records what it was asked: "<rows> <method>". */
    class RecordingGovernor extends SpeculationGovernor {
      readonly asked: string[] = [];
      override decide(batch: number, key = 'default'): boolean {
        this.asked.push(`${batch} ${key}`);
        return true;
      }
    }

    function chainScheduler(
      table: NextTokenTable | null,
      governor: SpeculationGovernor | null = null,
      datastore: Datastore | null = null,
    ): { s: Scheduler<SequenceKvCache>; metrics: PoolMetrics } {
      const metrics = new PoolMetrics();
      const s = new Scheduler(runner, {
        limits: { maxActive: 32, maxQueued: 32, maxTotalTokens: 1_000_000 },
        budget: new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 16 }),
        governor,
        metrics,
        createDrafter: drafterFactory(datastore),
        chainTable: table,
      });
      return { s, metrics };
    }

    function run(s: Scheduler<SequenceKvCache>, id: string, i: number, speculation: 'off' | 'sssd', sampled: boolean): Promise<PoolEvent[]> {
      const c = collect();
      const f = fixtures[i % fixtures.length];
      s.submit(
        generateRequestSchema.parse({
          id,
          promptIds: f.prompt_ids,
          maxTokens: 48,
          speculation,
          ...(sampled ? { sampling: { temperature: 0.8, topP: 0.95, seed: 500 + i } } : {}),
        }),
        c.sink,
      );
      return c.done;
    }

    const ids = (events: PoolEvent[]): number[] => events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));

    it('a table that throws while chaining costs its rows their speculation, never their output', async () => {
      const table = await fixtureTable();
      // Every fifth lookup fails.
      let calls = 0;
      const faulty = Object.create(table) as NextTokenTable;
      faulty.lookup = (...args: Parameters<NextTokenTable['lookup']>) => {
        if (++calls % 5 === 0) throw new Error('table fault');
        return table.lookup(...args);
      };
      const { s, metrics } = chainScheduler(faulty);
      const n = 20;
      const sssd = await Promise.all(Array.from({ length: n }, (_, i) => run(s, `faulty-chain${i}`, i, 'sssd', i % 4 === 3)));
      const off = await Promise.all(Array.from({ length: n }, (_, i) => run(s, `faulty-plain${i}`, i, 'off', i % 4 === 3)));
      const faults = (await metrics.draftFailures.get()).values.find((v) => v.labels.kind === 'drafter')?.value ?? 0;
      expect(faults).toBeGreaterThan(0);
      for (let i = 0; i < n; i++) {
        expect(sssd[i].at(-1)).toMatchObject({ type: 'done', finishReason: 'length' });
        expect(ids(sssd[i]), `request ${i}`).toEqual(ids(off[i]));
      }
    });

    it('rows of a batch too wide for the fused drafter verify short chains from the table, and lose nothing, greedy or sampled', async () => {
      const budget = new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 16 });
      expect(budget.kneeTokens).toBeLessThanOrEqual(20);
      expect(budget.secondTokenShare(20)).toBeGreaterThan(0.1);
      const table = await fixtureTable();
      const { s, metrics } = chainScheduler(table);
      runner.steps = [];
      const n = 20;
      const sssd = await Promise.all(Array.from({ length: n }, (_, i) => run(s, `chain${i}`, i, 'sssd', i % 4 === 3)));
      const wide = runner.steps.filter((rows) => rows.length >= 16 && rows.every((t) => t <= 1 + CHAIN_NODES));
      // Wide decode steps carried chains (every row one length: a padded pass gains nothing from shorter ones).
      const chained = wide.filter((rows) => rows.some((t) => t > 1));
      expect(chained.length).toBeGreaterThan(wide.length / 2);
      for (const rows of chained) expect(Math.max(...rows)).toBeGreaterThan(1);
      const accepted = sssd.reduce((a, events) => a + ((events.at(-1) as Extract<PoolEvent, { type: 'done' }>).usage.speculation.acceptedTokens ?? 0), 0);
      expect(accepted).toBeGreaterThan(n * 10);
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/sssd_pool_speculating_steps_total\{drafter="chain"\} [1-9]/);

      // The same requests without speculation: token for token.
      const off = await Promise.all(Array.from({ length: n }, (_, i) => run(s, `plain${i}`, i, 'off', i % 4 === 3)));
      for (let i = 0; i < n; i++) expect(ids(sssd[i]), `request ${i}`).toEqual(ids(off[i]));
      for (let i = 0; i < n; i++) if (i % 4 !== 3) expect(ids(sssd[i])).toEqual(fixtures[i % fixtures.length].output_ids.slice(0, 48));
    });

    it('a batch whose rows take two tokens past the knee chains; a narrower one drafts fused trees', async () => {
      const table = await fixtureTable();
      // A datastore that knows the fixtures' continuations: fused trees pay wherever the budget lets them draft.
      const store = Datastore.fromDocuments(fixtures.map((f) => [...f.prompt_ids, ...f.output_ids]), { vocabSize: runner.config.vocabSize, indexer: 'inline' });
      const governor = new RecordingGovernor();
      const { s, metrics } = chainScheduler(table, governor, store);
      const knee = new TreeBudget(cpuLike, { policy: 'marginal', maxNodes: 16 }).kneeTokens;
      const treeSteps = async (): Promise<number> =>
        Number(/sssd_pool_speculating_steps_total\{drafter="tree"\} (\d+)/.exec(await metrics.registry.metrics())?.[1] ?? 0);
      const level = async (rows: number, tag: string): Promise<void> => {
        const ends = await Promise.all(Array.from({ length: rows }, (_, i) => run(s, `${tag}${i}`, i, 'sssd', false)));
        for (let i = 0; i < rows; i++) expect(ids(ends[i]), `${tag} ${i}`).toEqual(fixtures[i % fixtures.length].output_ids.slice(0, 48));
      };
      // Two tokens a row past the knee: the whole batch chains (put to the chains' vote) for as long as it is that wide.
      const wide = Math.floor(knee / 2) + 1;
      await level(wide, 'half-knee');
      const asked = governor.asked.filter((a) => Number(a.split(' ')[0]) >= wide);
      expect(asked.length).toBeGreaterThan(5);
      expect(asked.every((a) => a.endsWith(` ${CHAIN_METHOD}`))).toBe(true);
      // Under it the fused drafter drafts, unvoted, and nothing chains.
      governor.asked.length = 0;
      const before = await treeSteps();
      await level(Math.floor(knee / 2) - 2, 'under-half-knee');
      expect((await treeSteps()) - before).toBeGreaterThan(5);
      expect(governor.asked.filter((a) => a.endsWith(CHAIN_METHOD))).toEqual([]);
    });

    it("a repeated request's history chain is its chain in a wide batch: the edge's tokens, accepted, then a fresh trie asked for", async () => {
      const table = await fixtureTable();
      const { s } = chainScheduler(table);
      /** The trie an edge ships for a repeat: the answer it gave before, as a history chain. */
      const historyTrie = (f: { prompt_ids: number[]; output_ids: number[] }): string => {
        const next = f.output_ids.slice(0, 24);
        return Buffer.from(encodeEdgeTrie([f.prompt_ids.at(-1)!, ...next], [-1, ...next.map((_, k) => k)], [1, ...next.map(() => 0.98)], next.length)).toString('base64');
      };
      const n = 20;
      runner.steps = [];
      const runs = Array.from({ length: n }, (_, i) => {
        const c = collect();
        const f = fixtures[i % fixtures.length];
        s.submit(generateRequestSchema.parse({ id: `hist${i}`, promptIds: f.prompt_ids, maxTokens: 48, speculation: 'sssd', ...(i % 2 === 0 ? { trie: historyTrie(f) } : {}) }), c.sink);
        return c.done;
      });
      const events = await Promise.all(runs);
      // The batch was too wide for the fused drafter: rows chained.
      expect(runner.steps.filter((rows) => rows.length >= 16 && rows.some((t) => t > 1)).length).toBeGreaterThan(3);
      for (let i = 0; i < n; i++) {
        const f = fixtures[i % fixtures.length];
        expect(ids(events[i]), `request ${i}`).toEqual(f.output_ids.slice(0, 48));
        const fromEdge = events[i].reduce((k, e) => k + (e.type === 'tokens' ? e.sources.filter((x) => x === 'edge').length : 0), 0);
        const hints = events[i].filter((e) => e.type === 'trie-exhausted');
        if (i % 2 === 0) {
          // Most of the 24-token chain came from the edge (20-22 here; with table chains only, 0-16),
          // and its end asked for the next trie.
          expect(fromEdge, `request ${i}`).toBeGreaterThan(18);
          expect(hints).toHaveLength(1);
        } else {
          expect(fromEdge).toBe(0);
          expect(hints).toHaveLength(0);
        }
      }
    });

    it('rows that chained while the batch was wide go on chaining when it narrows, rather than build the fused drafter late', async () => {
      const table = await fixtureTable();
      const governor = new RecordingGovernor();
      const { s, metrics } = chainScheduler(table, governor);
      const runFor = (id: string, i: number, maxTokens: number): Promise<PoolEvent[]> => {
        const c = collect();
        const f = fixtures[i % fixtures.length];
        s.submit(generateRequestSchema.parse({ id, promptIds: f.prompt_ids, maxTokens, speculation: 'sssd' }), c.sink);
        return c.done;
      };
      runner.steps = [];
      // 16 rows end at 48 tokens; the 4 long ones are then alone, having run past 32 tokens on chains.
      const short = Array.from({ length: 16 }, (_, i) => runFor(`short-chain${i}`, i, 48));
      const long = Array.from({ length: 4 }, (_, i) => runFor(`long-chain${i}`, 16 + i, 120));
      const ends = await Promise.all([...short, ...long]);
      // The narrow batch was put to the chains' vote, never to the fused drafter's.

      const narrow = governor.asked.filter((a) => a.startsWith('4 '));
      expect(narrow.length).toBeGreaterThan(5);
      expect(narrow.every((a) => a === `4 ${CHAIN_METHOD}`)).toBe(true);
      // ...and its steps carried chains: at most CHAIN_NODES draft tokens a row.
      const narrowSteps = runner.steps.filter((rows) => rows.length === 4);
      expect(narrowSteps.filter((rows) => rows.some((t) => t > 1)).length).toBeGreaterThan(narrowSteps.length / 2);
      for (const rows of narrowSteps) expect(Math.max(...rows)).toBeLessThanOrEqual(1 + CHAIN_NODES);
      expect(await metrics.registry.metrics()).toMatch(/sssd_pool_speculating_steps_total\{drafter="chain"\} [1-9]/);
      // Lossless: each is the model's greedy continuation.
      for (let i = 0; i < 20; i++) {
        const want = fixtures[i % fixtures.length].output_ids.slice(0, i < 16 ? 48 : 120);
        expect(ids(ends[i]), `request ${i}`).toEqual(want);
      }
    });

    it('a sampled row drafts trees from the table beside a greedy row on the fused drafter, and samples what the model samples', async () => {
      const table = await fixtureTable();
      const { s } = chainScheduler(table);
      const open = (id: string, i: number, speculation: 'off' | 'sssd', sampled: boolean) => {
        const c = collect();
        const f = fixtures[i % fixtures.length];
        const gen = s.submit(
          generateRequestSchema.parse({ id, promptIds: f.prompt_ids, maxTokens: 48, speculation, ...(sampled ? { sampling: { temperature: 0.8, seed: 900 + i } } : {}) }),
          c.sink,
        );
        // Its drafter as admitted: a row lets go of it for its last token, which it has no room to draft.
        return { gen, drafter: gen.drafter, done: c.done };
      };
      const usage = (events: PoolEvent[]) => (events.at(-1) as Extract<PoolEvent, { type: 'done' }>).usage.speculation;
      const greedy = open('greedy-beside', 0, 'sssd', false);
      const sampled = open('sampled-chains', 1, 'sssd', true);
      const [greedyEvents, sampledEvents] = await Promise.all([greedy.done, sampled.done]);
      // The sampled row drafted (and had drafts accepted) without ever building its fused drafter; the greedy row built it.
      expect(usage(sampledEvents).drafts).toBeGreaterThan(0);
      expect(usage(sampledEvents).acceptedTokens).toBeGreaterThan(0);
      expect(sampled.drafter?.built).toBe(false);
      expect(greedy.drafter?.built).toBe(true);
      // Its drafts were table trees (table-tree.ts), not the wide batches' chains.
      expect(sampled.gen.tableTree).not.toBeNull();
      expect(sampled.gen.chainTree).toBeNull();
      expect(ids(greedyEvents)).toEqual(fixtures[0].output_ids.slice(0, 48));
      // The same seed without speculation: token for token.
      expect(ids(await open('sampled-off', 1, 'off', true).done)).toEqual(ids(sampledEvents));
    });

    it("does not charge the chains drafted beside fused trees to the fused drafter's cost per row", async () => {
      const table = await fixtureTable();
      // Every table lookup takes 4 ms: a chain's time would swamp a fused tree's (~0.05 ms a row).
      const lookup = table.lookup.bind(table);
      table.lookup = (tokens, end, atMost) => {
        const until = performance.now() + 4;
        while (performance.now() < until);
        return lookup(tokens, end, atMost);
      };
      const budget = new RecordingBudget(cpuLike, { policy: 'marginal', maxNodes: 16 });
      const s = new Scheduler(runner, {
        limits: { maxActive: 8, maxQueued: 8, maxTotalTokens: 1_000_000 },
        budget,
        metrics: new PoolMetrics(),
        createDrafter: drafterFactory(null),
        chainTable: table,
      });
      const [, sampledEvents] = await Promise.all([run(s, 'fused-beside', 0, 'sssd', false), run(s, 'chained-beside', 1, 'sssd', true)]);
      // The sampled row chained in steps where the greedy row drafted its fused tree...
      expect((sampledEvents.at(-1) as Extract<PoolEvent, { type: 'done' }>).usage.speculation.drafts).toBeGreaterThan(0);
      const perRowMs = budget.drafts.filter((d) => d.rows > 0 && d.method === 'sssd').map((d) => d.ms / d.rows);
      expect(perRowMs.length).toBeGreaterThan(3);
      // ...and those steps did not charge its ≥ 4 ms chains to the fused drafter
      // (the median: a loaded machine may stall any one step for a few ms).
      const sorted = perRowMs.sort((a, b) => a - b);
      expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(2);
    });

    it("without a table, or where the governor's chain arm loses, a wide batch decodes plain", async () => {
      const table = await fixtureTable();
      class ChainRefusingGovernor extends SpeculationGovernor {
        readonly keys: string[] = [];
        override decide(batch: number, key = 'default'): boolean {
          this.keys.push(key);
          return key !== CHAIN_METHOD && batch < GOVERNED_FROM_ROWS;
        }
      }
      const governor = new ChainRefusingGovernor();
      for (const { s } of [chainScheduler(null), chainScheduler(table, governor)]) {
        runner.steps = [];
        await Promise.all(Array.from({ length: 20 }, (_, i) => run(s, `plain-wide${i}`, i, 'sssd', false)));
        const wide = runner.steps.filter((rows) => rows.length >= 16);
        expect(wide.length).toBeGreaterThan(10);
        // Only the prefill step has rows longer than one token.
        expect(wide.filter((rows) => rows.some((t) => t > 1)).length).toBe(1);
      }
      expect(governor.keys).toContain(CHAIN_METHOD);
    });
  });
});
