import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { benchEdgeCpu } from '../../edge/bench-route';
import type { ServedModel } from '../../edge/served-model';
import { loadTokenizer } from '../../shared/tokenizer/load-tokenizer';
import { models } from '../support/shared-data';
import { refusalOfAsync } from '../support/refusal';

// Only the parts a refusal reads: the tokenizer (to build the user cache it prices). KV is never reached.
const model = { tokenizer: loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c') } as unknown as ServedModel;
const noKv = null as unknown as KVNamespace;
const refusal = (body: object): Promise<ApiError> => refusalOfAsync(benchEdgeCpu(body, model, noKv));

describe('POST /bench/edge-cpu bounds', () => {
  it("refuses a run whose work, the user cache's included, would hold the edge's thread for minutes, before any of it runs", async () => {
    // A long history into a cache allowed 16 MiB, default tries: the cache's bytes alone put 5,000 repeats past the bound
    // (a 960 KB body of history with 100,000 repeats measured ~29 minutes, and passed the old bound: prompt and output only).
    // Words in a seeded random order: a cache of ~400 KB (a story repeated makes a small one).
    const words = 'the cat dog sun ran big red ball tree happy sad girl boy mom dad park play jump fly bird fish car box cake friend'.split(' ');
    let x = 7;
    const word = (): string => words[(x = (x * 1103515245 + 12345) & 0x7fffffff) % words.length];
    const history = Array.from({ length: 16 }, () => Array.from({ length: 3000 }, word).join(' ').slice(0, 16_000));
    const err = await refusal({ prompt: 'x', history, maxBytes: 16 * 1024 * 1024, repeat: 5000 });
    expect(err).toBeInstanceOf(ApiError);
    expect(err.param).toBe('repeat');
    expect(err.message).toMatch(/more than 200,000,000: lower repeat/);
    const cacheBytes = Number(/([\d,]+) bytes of user cache/.exec(err.message)![1].replace(/,/g, ''));
    expect(5000 * (2 + 64 * 128)).toBeLessThan(200_000_000);
    expect(5000 * cacheBytes).toBeGreaterThan(200_000_000);
  });

  it('refuses a history past 262,144 characters in all, by name', async () => {
    const err = await refusal({ prompt: 'x', history: Array.from({ length: 17 }, () => 'y'.repeat(16_384)) });
    expect(err.param).toBe('history');
    expect(err.message).toMatch(/history must hold at most 262,144 characters in all/);
  });
});
