import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { benchEdgeCpu } from '../../edge/bench-route';
import type { ServedModel } from '../../edge/served-model';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';

// Only the parts a refusal reads: the tokenizer (to build the user cache it prices). KV is never reached.
const model = { tokenizer: loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c') } as unknown as ServedModel;
const noKv = null as unknown as KVNamespace;
const refusal = (body: object): Promise<ApiError> => benchEdgeCpu(body, model, noKv).then(() => { throw new Error('ran'); }, (err: ApiError) => err);

describe('POST /bench/edge-cpu bounds', () => {
  it("refuses a run whose work, the user cache's included, would hold the edge's thread for minutes, before any of it runs", async () => {
    // 60 long texts of history, 4,096-node tries, 100,000 repeats: ~29 minutes measured, and it passed the old bound (prompt and output only).
    const history = Array.from({ length: 16 }, (_, i) => `Once upon a time ${i} there was a cat who liked the sun. `.repeat(280));
    const err = await refusal({ prompt: 'x', history, trieNodes: 4096, repeat: 1000 });
    expect(err).toBeInstanceOf(ApiError);
    expect(err.param).toBe('repeat');
    expect(err.message).toMatch(/more than 200,000,000: lower repeat/);
  });

  it('refuses a history past 262,144 characters in all, by name', async () => {
    const err = await refusal({ prompt: 'x', history: Array.from({ length: 17 }, () => 'y'.repeat(16_384)) });
    expect(err.param).toBe('history');
    expect(err.message).toMatch(/history must hold at most 262,144 characters in all/);
  });
});
