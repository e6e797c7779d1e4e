import { describe, expect, it } from 'vitest';
import { Datastore } from '../../../gpu-pool/datastore/datastore';
import { replay, type ReplayRequest } from '../../../gpu-pool/eval/replay';
import { NextTokenTableBuilder } from '../../../shared/drafting/next-token-table';

describe('replay (greedy verification against a known continuation)', () => {
  it('gives the exact τ worked out by hand for prompt lookup', async () => {
    const requests: ReplayRequest[] = [
      // Proposes 4,5 (after the earlier "2 3"); both accepted, bonus 9: 3 tokens in 1 step.
      { user: 'a', promptIds: [1, 2, 3, 4, 5, 2, 3], continuation: [4, 5, 9] },
      // Each step proposes one 7 (the chain stops at the end of the context), accepted + bonus: 6 tokens in 3 steps.
      { user: 'b', promptIds: [1, 7, 7, 7], continuation: [7, 7, 7, 7, 7, 7] },
    ];
    const r = await replay(requests, 'pld', 2);
    expect(r.steps).toBe(4);
    expect(r.emitted).toBe(9);
    expect(r.tau).toBe(9 / 4);
    expect(r.acceptedTokens).toBe(5);
    expect((await replay(requests, 'none', 2)).tau).toBe(1);
  });

  it('counts no bonus token past the end of the continuation', async () => {
    const r = await replay([{ user: 'a', promptIds: [1, 2, 3, 4, 5, 2, 3], continuation: [4, 5] }], 'pld', 4);
    expect(r.steps).toBe(1);
    expect(r.tau).toBe(2);
  });

  it('lets a returning user draft from their cache (context+user) and not across users', async () => {
    const first: ReplayRequest = { user: 'u', promptIds: [1, 10], continuation: [20, 21, 22, 23] };
    // 4 + 4 tokens: 4 single-token steps, then the whole repeat in one step.
    const r = await replay([first, { ...first }], 'context+user', 8);
    expect(r.steps).toBe(5);
    expect(r.tau).toBe(8 / 5);
    expect(r.mergeMillisMedian).toBeGreaterThan(0);
    expect((await replay([first, { ...first }], 'context', 8)).tau).toBe(1);
    expect((await replay([first, { ...first, user: 'v' }], 'context+user', 8)).tau).toBe(1);
  });

  it('drafts from the datastore (context+datastore)', async () => {
    const datastore = Datastore.fromDocuments([[1, 30, 31, 32, 33]], { indexer: 'inline' });
    // Proposes 31 32 33; all accepted, bonus 1.
    const r = await replay([{ user: 'a', promptIds: [1, 5, 30], continuation: [31, 32, 33, 1] }], 'context+datastore', 8, { datastore });
    expect(r.steps).toBe(1);
    expect(r.tau).toBe(4);
    await expect(replay([], 'context+datastore', 8)).rejects.toThrow(/datastore/);
  });

  it('learns from every finished request when the datastore is live', async () => {
    const first: ReplayRequest = { user: 'u', promptIds: [1, 40], continuation: [41, 42, 43, 44] };
    const second: ReplayRequest = { user: 'v', promptIds: [1, 40], continuation: [41, 42, 43, 44] };
    const fresh = (): Datastore => Datastore.fromDocuments([[1, 2, 3]], { indexer: 'inline' });
    // Static: 8 single-token steps. Live: the second user gets the first user's output, 1 step.
    expect((await replay([first, second], 'context+datastore', 8, { datastore: fresh() })).steps).toBe(8);
    const live = fresh();
    const r = await replay([first, second], 'context+datastore', 8, { datastore: live, liveDatastore: true });
    expect(r.steps).toBe(5);
    expect(live.tokenCount).toBeGreaterThan(3);
    await live.close();
  });

  it("drafts the pool's wide-batch chains from the next-token table alone (table-chain)", async () => {
    // The model wrote 1 50 51 52 53 54 twice, sure of each next token.
    const b = new NextTokenTableBuilder(64);
    const text = [1, 50, 51, 52, 53, 54];
    for (let pass = 0; pass < 2; pass++) {
      for (let end = 2; end < text.length; end++) {
        const logits = new Float32Array(64).fill(-30);
        logits[text[end]] = 0;
        b.add(text, end, logits);
      }
    }
    const nextTokens = b.build();
    // After 1 50: a chain of 2 (51 52) per step, both accepted, plus the bonus: 3 + 1 tokens in 2 steps.
    const r = await replay([{ user: 'a', promptIds: [1, 50], continuation: [51, 52, 53, 54] }], 'table-chain', 2, { nextTokens });
    expect(r.steps).toBe(2);
    expect(r.acceptedTokens).toBe(3);
    // Its drafts come from the table only: a context the table lacks drafts nothing.
    expect((await replay([{ user: 'a', promptIds: [1, 7], continuation: [8, 9] }], 'table-chain', 4, { nextTokens })).tau).toBe(1);
    await expect(replay([], 'table-chain', 4)).rejects.toThrow(/next-token table/);
  });

  it("drafts sampled requests' trees from the table alone (table-tree), greedy ones as table-chain", async () => {
    // After 1 50 the model wrote 51 or 60 about equally often, then 52 after 51.
    const b = new NextTokenTableBuilder(64);
    const probs = (p: Record<number, number>): Float32Array => {
      const logits = new Float32Array(64).fill(-30);
      for (const [t, q] of Object.entries(p)) logits[Number(t)] = Math.log(q);
      return logits;
    };
    for (let pass = 0; pass < 2; pass++) {
      b.add([1, 50, 51, 52], 2, probs({ 51: 0.5, 60: 0.5 }));
      b.add([1, 50, 51, 52], 3, probs({ 52: 1 }));
    }
    const nextTokens = b.build();
    const sampling = { temperature: 1, topP: 1, seed: 5 };
    const requests = (continuation: number[]) => [{ user: 'a', promptIds: [1, 50], continuation, sampling }];
    // A tree of two nodes holds both coin-toss candidates: whichever was sampled is accepted.
    for (const first of [51, 60]) {
      const r = await replay(requests([first, 7]), 'table-tree', 2, { nextTokens });
      expect(r.acceptedTokens, `sampled ${first}`).toBe(1);
    }
    // A chain of two holds one of them and the token after it.
    const chain = await Promise.all([51, 60].map((first) => replay(requests([first, 7]), 'table-chain', 2, { nextTokens })));
    expect(chain.map((r) => r.acceptedTokens).sort()).toEqual([0, 1]);
    // Greedy requests chain.
    const greedy = [{ user: 'a', promptIds: [1, 50], continuation: [51, 52, 7] }];
    expect((await replay(greedy, 'table-tree', 2, { nextTokens })).acceptedTokens).toBe((await replay(greedy, 'table-chain', 2, { nextTokens })).acceptedTokens);
    await expect(replay([], 'table-tree', 4)).rejects.toThrow(/table-tree needs the next-token table/);
  });
});
