import { describe, expect, it } from 'vitest';
import { describeMeasuredPool, measuredPool } from '../../../gpu-pool/bench/measured-pool';
import type { PoolInfo } from '../../../shared/protocol';

const info: PoolInfo = {
  protocol: 1,
  model: { name: 'stories260K.bin', contextLength: 512, vocabSize: 512, bosId: 1, eosIds: [2], chatTemplate: 'concat', sha256: 'ab'.repeat(32) },
  tokenizer: { format: 'llama2c', path: '/v1/tokenizer', sha256: 'cd'.repeat(32) },
  datastore: { enabled: true, tokens: 380_412 },
  limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 4104, prefillChunk: 0, tenantReserve: 1, preempt: false },
  runtime: { executionProvider: 'cpu' },
};

describe('the pool a bench-serve run measured', () => {
  it("is named by model, hashes, provider, datastore and the limits as the pool's flags (a run against a pool left on the port read like any other)", () => {
    const pool = measuredPool('http://127.0.0.1:9106', info, true);
    expect(pool).toEqual({
      url: 'http://127.0.0.1:9106',
      model: { name: 'stories260K.bin', contextLength: 512, sha256: 'ab'.repeat(32) },
      tokenizer: { format: 'llama2c', sha256: 'cd'.repeat(32) },
      executionProvider: 'cpu',
      datastore: { enabled: true, tokens: 380_412, used: true },
      limits: { maxActive: 4, maxQueued: 4, maxTotalTokens: 4104, prefillChunk: 0, tenantReserve: 1, preempt: false },
    });
    expect(describeMeasuredPool(pool)).toBe(
      `pool http://127.0.0.1:9106: stories260K.bin (context 512, tokenizer ${'cd'.repeat(6)}, weights ${'ab'.repeat(6)}) on cpu; a datastore of 380,412 tokens; --max-active 4 --max-queued 4 --max-total-tokens 4104 --prefill-chunk 0 --tenant-reserve 1 --no-preempt`,
    );
  });

  it("says where the run did not use the pool's datastore, where there is none, and leaves out what an older pool does not say", () => {
    expect(describeMeasuredPool(measuredPool('u', info, false))).toMatch(/; a datastore of 380,412 tokens, not used \(--no-datastore\);/);
    const older: PoolInfo = { ...info, model: { ...info.model, sha256: undefined }, datastore: { enabled: false, tokens: 0 }, limits: { maxActive: 64, maxQueued: 256, maxTotalTokens: 164_160 }, runtime: undefined };
    const pool = measuredPool('u', older, true);
    expect(pool.model.sha256).toBeUndefined();
    expect(pool.executionProvider).toBeUndefined();
    expect(pool.datastore.used).toBe(false);
    expect(describeMeasuredPool(pool)).toBe(`pool u: stories260K.bin (context 512, tokenizer ${'cd'.repeat(6)}); no datastore; --max-active 64 --max-queued 256 --max-total-tokens 164160`);
  });
});
