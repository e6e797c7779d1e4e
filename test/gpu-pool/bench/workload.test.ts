import { describe, expect, it } from 'vitest';
import { loadWorkload, parseWorkload } from '../../../gpu-pool/bench/workload';
import { workloads } from '../../support/shared-data';

describe('a serving workload', () => {
  it("is refused by its line where the pool would refuse a request of it, before any run (temperature 5 failed at the pool after the warm-up)", () => {
    const line = (fields: object): string => JSON.stringify({ user: 'u', prompt: 'Once', max_tokens: 4, ...fields });
    expect(() => parseWorkload([line({}), line({ temperature: 5 })].join('\n'), 'w.jsonl')).toThrow(/^w\.jsonl:2: temperature: .*2/);
    expect(() => parseWorkload(line({ top_p: 0 }), 'w.jsonl')).toThrow(/^w\.jsonl:1: top_p: /);
    expect(() => parseWorkload(line({ seed: -1 }), 'w.jsonl')).toThrow(/^w\.jsonl:1: seed: /);
    expect(() => parseWorkload('\n\n', 'w.jsonl')).toThrow('w.jsonl holds no requests');
    expect(parseWorkload(line({ temperature: 2, top_p: 1, seed: 7 }), 'w.jsonl')[0]).toMatchObject({ temperature: 2, top_p: 1, seed: 7, arrival_s: 0 });
  });

  it('reads the development workload whole', async () => {
    expect((await loadWorkload(workloads.devSessions)).length).toBe(192);
  });
});
