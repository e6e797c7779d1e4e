import { describe, expect, it } from 'vitest';
import { loadServedWorkload, loadWorkload, parseWorkload, poolFieldsOf, servedWorkloadRequestSchema, unhonouredFields } from '../../../gpu-pool/bench/workload';
import { generateRequestSchema } from '../../../shared/protocol';
import { POOL_FEATURES } from '../../../shared/pool-features';
import { workloads } from '../../support/shared-data';

const line = (fields: object): string => JSON.stringify({ user: 'u', prompt: 'Once', max_tokens: 4, temperature: 0, ...fields });
/** A line as bench-serve reads it. */
const served = (fields: object) => parseWorkload(line(fields), 'w.jsonl', servedWorkloadRequestSchema)[0];

describe('a serving workload', () => {
  it("is refused by its line where the pool would refuse a request of it, before any run (temperature 5 failed at the pool after the warm-up)", () => {
    expect(() => parseWorkload([line({}), line({ temperature: 5 })].join('\n'), 'w.jsonl')).toThrow(/^w\.jsonl:2: temperature: .*2/);
    expect(() => parseWorkload(line({ top_p: 0 }), 'w.jsonl')).toThrow(/^w\.jsonl:1: top_p: /);
    expect(() => parseWorkload(line({ seed: -1 }), 'w.jsonl')).toThrow(/^w\.jsonl:1: seed: /);
    expect(() => parseWorkload('\n\n', 'w.jsonl')).toThrow('w.jsonl holds no requests');
    expect(parseWorkload(line({ temperature: 2, top_p: 1, seed: 7 }), 'w.jsonl')[0]).toMatchObject({ temperature: 2, top_p: 1, seed: 7, arrival_s: 0 });
  });

  it("requires temperature, whose default is the pool's greedy 0 and OpenAI's 1 (a trace without it was benchmarked greedy), and takes top_p's 1, which both share", () => {
    const { temperature: _, ...noTemperature } = JSON.parse(line({})) as Record<string, unknown>;
    for (const text of [JSON.stringify(noTemperature), line({ temperature: null })]) {
      expect(() => parseWorkload(`${line({})}\n${text}`, 'w.jsonl')).toThrow("w.jsonl:2: temperature: required: 0 for greedy decoding (OpenAI's default, for a request that names none, is 1)");
      expect(() => parseWorkload(text, 'w.jsonl', servedWorkloadRequestSchema)).toThrow(/^w\.jsonl:1: temperature: required/);
    }
    const { user: __, ...noUser } = JSON.parse(line({})) as Record<string, unknown>;
    expect(() => parseWorkload(JSON.stringify(noUser), 'w.jsonl')).toThrow(/^w\.jsonl:1: user: required$/);
    expect(parseWorkload(line({ temperature: 0.7 }), 'w.jsonl')[0]).toMatchObject({ temperature: 0.7, top_p: 1 });
    expect(parseWorkload(line({ temperature: 0.7 }), 'w.jsonl')[0].seed).toBeUndefined();
  });

  it('refuses a field its reader would not replay, by its line, rather than drop it (stop and top_k ran as if absent)', () => {
    expect(() => parseWorkload(`${line({})}\n${line({ n: 2, logprobs: true })}`, 'w.jsonl', servedWorkloadRequestSchema)).toThrow(
      /^w\.jsonl:2: unknown fields "n", "logprobs": not replayed here \(a line takes user, prompt, max_tokens, temperature, top_p, seed, arrival_s, stop, top_k, min_p, frequency_penalty, presence_penalty, repetition_penalty\)$/,
    );
    // eval-drafts replays temperature, top_p and seed alone: bench-serve's other fields are unknown to it.
    expect(() => parseWorkload(line({ stop: '.' }), 'w.jsonl')).toThrow(/^w\.jsonl:1: unknown field "stop": not replayed here \(a line takes user, prompt, max_tokens, temperature, top_p, seed, arrival_s\)$/);
    expect(() => parseWorkload(line({ top_k: 5 }), 'w.jsonl')).toThrow(/unknown field "top_k"/);
  });

  it("reads bench-serve's other fields with the pool's bounds, and refuses stop strings the pool would not follow (no edge finds them here)", () => {
    expect(served({ stop: '.', top_k: 5, min_p: 0.1, frequency_penalty: 0.5, presence_penalty: -0.5, repetition_penalty: 1.2 })).toMatchObject({ stop: '.', top_k: 5, min_p: 0.1 });
    // null is OpenAI's "not set".
    expect(served({ stop: null, top_k: null, min_p: null })).toMatchObject({ stop: null, top_k: null });
    expect(() => served({ stop: ['a', 'b', 'c', 'd', 'e'] })).toThrow(/^w\.jsonl:1: stop: /);
    expect(() => served({ stop: '' })).toThrow(/stop: a stop string is 1 to 1024 characters/);
    expect(() => served({ stop: ['x'.repeat(1025)] })).toThrow(/stop\.0: a stop string is 1 to 1024 characters/);
    expect(() => served({ stop: '\ud800' })).toThrow(/lone surrogate/);
    expect(() => served({ top_k: 1.5 })).toThrow(/^w\.jsonl:1: top_k: /);
    expect(() => served({ top_k: -2 })).toThrow(/^w\.jsonl:1: top_k: /);
    expect(() => served({ min_p: 1.5 })).toThrow(/^w\.jsonl:1: min_p: /);
    expect(() => served({ frequency_penalty: 3 })).toThrow(/^w\.jsonl:1: frequency_penalty: /);
    expect(() => served({ repetition_penalty: 0 })).toThrow(/^w\.jsonl:1: repetition_penalty: /);
  });

  it("becomes the pool's generate fields as written: sampling, seed where given, stop strings as a list", () => {
    const plain = poolFieldsOf(served({ temperature: 0.8, top_p: 0.9, seed: 3 }));
    expect(plain).toEqual({ sampling: { temperature: 0.8, topP: 0.9, topK: 0, minP: 0, frequencyPenalty: 0, presencePenalty: 0, repetitionPenalty: 1, seed: 3 } });
    const full = poolFieldsOf(served({ stop: '.', top_k: 5, min_p: 0.1, frequency_penalty: 0.5, presence_penalty: -0.5, repetition_penalty: 1.2 }));
    expect(full).toEqual({ sampling: { temperature: 0, topP: 1, topK: 5, minP: 0.1, frequencyPenalty: 0.5, presencePenalty: -0.5, repetitionPenalty: 1.2 }, stopStrings: ['.'] });
    // vLLM's -1 is no cut, the pool's 0; a list of stop strings goes as it is.
    expect(poolFieldsOf(served({ top_k: -1, stop: ['.', '!'] }))).toMatchObject({ sampling: { topK: 0 }, stopStrings: ['.', '!'] });
    expect(poolFieldsOf(served({ stop: [] })).stopStrings).toBeUndefined();
    // What the pool's own schema reads back is what was meant.
    const body = generateRequestSchema.parse({ id: 'x', promptIds: [1], maxTokens: 4, ...full });
    expect(body.sampling).toEqual(full.sampling);
    expect(body.stopStrings).toEqual(['.']);
  });

  it("names the fields a pool would drop unread (one from before their feature answers 200 without them), and none for a pool of this code", () => {
    const requests = [served({ stop: '.' }), served({ min_p: 0.1, repetition_penalty: 1 }), served({ frequency_penalty: 0 })];
    expect(unhonouredFields(requests, POOL_FEATURES)).toEqual([]);
    expect(unhonouredFields(requests, [])).toEqual(['stop (the pool lists no stopStrings feature)', 'min_p (the pool lists no sampling.minP feature)']);
    // Neutral values change nothing, so they need nothing; top_k is protocol 1's from its first form.
    expect(unhonouredFields([served({ top_k: 5, presence_penalty: 0, stop: [] })], [])).toEqual([]);
  });

  it('reads the development workload whole, with either reader', async () => {
    expect((await loadWorkload(workloads.devSessions)).length).toBe(192);
    expect((await loadServedWorkload(workloads.devSessions)).length).toBe(192);
  });
});
