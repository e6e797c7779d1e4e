// The edge's system_fingerprint: short, OpenAI's shape, and another one for anything that changes a seeded reply.
import { describe, expect, it } from 'vitest';
import { systemFingerprint, type FingerprintParts } from '../../edge/system-fingerprint';

const parts: FingerprintParts = { weights: 'a'.repeat(64), tokenizer: 'b'.repeat(64), sampler: 3, stopMatcher: 1 };

describe('the system fingerprint', () => {
  it("has OpenAI's shape and is the same for the same parts", async () => {
    const fingerprint = await systemFingerprint(parts);
    expect(fingerprint).toMatch(/^fp_[0-9a-f]{10}$/);
    expect(await systemFingerprint({ ...parts })).toBe(fingerprint);
  });

  it('changes with the weights (two checkpoints under one name), the tokenizer, the sampler or the stop matcher', async () => {
    const variants: FingerprintParts[] = [
      { ...parts, weights: 'c'.repeat(64) },
      { ...parts, weights: null },
      { ...parts, tokenizer: 'd'.repeat(64) },
      { ...parts, sampler: parts.sampler + 1 },
      { ...parts, stopMatcher: parts.stopMatcher + 1 },
    ];
    const fingerprints = await Promise.all([parts, ...variants].map(systemFingerprint));
    expect(new Set(fingerprints).size).toBe(fingerprints.length);
  });
});
