// The pool's lazy drafter must draft exactly what an eager RequestDrafter
// drafts: built at the first draft, emitted tokens queued between drafts,
// pushed edge tries applied where they arrived in the stream.
import { describe, expect, it } from 'vitest';
import { INDEX_SLICE, RequestDrafter } from '../../../shared/drafting/request-drafter';
import type { DraftTree } from '../../../shared/drafting/draft-tree';
import { LazyDrafter, drafterFactory } from '../../../gpu-pool/scheduler/drafter-factory';
import { defaultFusionWeights } from '../../../shared/drafting/fusion';
import { generateRequestSchema } from '../../../shared/protocol';

const snapshot = (t: DraftTree) => ({ tokens: Array.from(t.tokens.subarray(0, t.size)), parents: Array.from(t.parents.subarray(0, t.size)) });

describe('LazyDrafter', () => {
  it('drafts what an eager drafter fed the same tokens drafts, and builds nothing until asked', () => {
    const story = [1, 40, 41, 42, 43, 44, 45, 40, 41, 42, 43, 46, 47, 40, 41];
    const make = () => new RequestDrafter({ method: 'context', promptIds: story });
    let builds = 0;
    const lazy = new LazyDrafter(() => {
      builds++;
      return make();
    });
    const eager = make();
    const steps = [[42], [43, 44], [45], [40, 41], [42, 43], [46], [47, 40]];
    lazy.accept(steps[0]);
    eager.accept(steps[0]);
    lazy.accept(steps[1]);
    eager.accept(steps[1]);
    expect(builds).toBe(0);
    expect(lazy.built).toBe(false);
    expect(lazy.queuedTokens).toBe(3);
    expect(snapshot(lazy.draft(8))).toEqual(snapshot(eager.draft(8)));
    expect(builds).toBe(1);
    expect(lazy.queuedTokens).toBe(0);
    for (const [i, ids] of steps.slice(2).entries()) {
      lazy.accept(ids);
      eager.accept(ids);
      // Drafts on some steps only, as a row that the budget rests.
      if (i % 2 === 1) expect(snapshot(lazy.draft(6))).toEqual(snapshot(eager.draft(6)));
    }
    expect(snapshot(lazy.draft(12))).toEqual(snapshot(eager.draft(12)));
    expect(builds).toBe(1);
  });
});

describe('LazyDrafter with a long prompt', () => {
  it('counts the prompt its drafter has still to index as queued, so the scheduler keeps those drafts out of the drafting cost', () => {
    const prompt = Array.from({ length: INDEX_SLICE * 3 + 100 }, (_, i) => 2 + ((i * 37) % 400));
    const lazy = new LazyDrafter(() => new RequestDrafter({ method: 'context', promptIds: prompt }));
    lazy.accept([5, 6]);
    expect(lazy.queuedTokens).toBe(2);
    lazy.draft(8);
    // Built with one slice, one more at the draft; the two emitted tokens wait behind the rest.
    expect(lazy.queuedTokens).toBe(prompt.length + 2 - 2 * INDEX_SLICE);
    lazy.draft(8);
    lazy.draft(8);
    expect(lazy.queuedTokens).toBe(0);
  });
});

describe('drafterFactory', () => {
  it("drafts with the pool's fusion weights (--speculative-config fusion)", () => {
    const story = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 40, 41];
    const request = generateRequestSchema.parse({ id: 'w', promptIds: story, maxTokens: 16, speculation: 'context' });
    const depth = (t: DraftTree): number => Math.max(...Array.from(t.depths.subarray(0, t.size)));
    const deep = drafterFactory(null)(request)!.draft(16);
    // The context trie's window bounds how deep its candidates go.
    const shallow = drafterFactory(null, null, { ...defaultFusionWeights, contextWindow: 3 })(request)!.draft(16);
    expect(depth(deep)).toBeGreaterThan(3);
    expect(depth(shallow)).toBeLessThanOrEqual(3);
  });
});
