/**
 * The bench's edge: tries drafted on the client's thread from caches merged
 * on a worker thread. A trie must see its user's earlier turns even while
 * their merge is still on the worker, and nothing of other users or of a
 * level before a reset.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EdgeEmulator } from '../../../gpu-pool/bench/edge-emulator';
import { MergeThreadEdge } from '../../../gpu-pool/bench/edge-emulator-thread';

const VOCAB = 512;
const story = (seed: number, n: number): number[] => Array.from({ length: n }, (_, i) => 3 + ((seed * 31 + i * 7 + (i >> 3) * 13) % 400));

let edge: MergeThreadEdge | null = null;
afterEach(async () => {
  await edge?.close();
  edge = null;
});

describe('MergeThreadEdge', () => {
  it('drafts from the merged history of the same user, exactly as the in-thread edge', async () => {
    edge = new MergeThreadEdge(VOCAB);
    const reference = new EdgeEmulator(VOCAB);
    const prompt = [1, ...story(1, 12)];
    const output = story(2, 80);
    expect(await edge.trieFor('ann', prompt)).toBeUndefined();

    // The trie is asked for right after the record, before the worker can
    // have answered: it must wait for ann's merge, not draft from nothing.
    edge.record('ann', prompt, output);
    reference.record('ann', prompt, output);
    const next = [1, ...output.slice(0, 10)];
    const trie = await edge.trieFor('ann', next);
    expect(trie).toBeDefined();
    expect(trie).toBe(reference.trieFor('ann', next));

    // Another user's history is not ann's, and a second turn builds on the first.
    expect(await edge.trieFor('bob', next)).toBeUndefined();
    const output2 = story(3, 60);
    edge.record('ann', next, output2);
    edge.record('ann', next, output2);
    reference.record('ann', next, output2);
    reference.record('ann', next, output2);
    const third = [1, ...output2.slice(0, 6)];
    expect(await edge.trieFor('ann', third)).toBe(reference.trieFor('ann', third));
  });

  it("drafts as the Worker does for a short reply: none at depth 0 (max_tokens 1), else no deeper than it's told", async () => {
    edge = new MergeThreadEdge(VOCAB);
    const prompt = [1, ...story(6, 12)];
    const output = story(7, 80);
    edge.record('dee', prompt, output);
    const next = [1, ...output.slice(0, 10)];
    expect(await edge.trieFor('dee', next, true, 0)).toBeUndefined();
    const whole = await edge.trieFor('dee', next);
    const shallow = await edge.trieFor('dee', next, true, 2);
    expect(shallow).toBeDefined();
    expect(Buffer.from(shallow!, 'base64').length).toBeLessThan(Buffer.from(whole!, 'base64').length);
    const reference = new EdgeEmulator(VOCAB);
    reference.record('dee', prompt, output);
    expect(shallow).toBe(reference.trieFor('dee', next, true, 2));
  });

  it('forgets every cache on reset, including merges still on their way', async () => {
    edge = new MergeThreadEdge(VOCAB);
    const prompt = [1, ...story(4, 10)];
    const output = story(5, 60);
    edge.record('cy', prompt, output);
    expect(await edge.trieFor('cy', [1, ...output.slice(0, 8)])).toBeDefined();
    edge.record('cy', prompt, output);
    edge.reset();
    expect(await edge.trieFor('cy', [1, ...output.slice(0, 8)])).toBeUndefined();
    // The merge posted before the reset comes back and is dropped.
    await new Promise((r) => setTimeout(r, 50));
    expect(await edge.trieFor('cy', [1, ...output.slice(0, 8)])).toBeUndefined();
  });

  it('says when its merge thread is ready, and stays ready', async () => {
    edge = new MergeThreadEdge(VOCAB);
    let ready = false;
    const waiting = edge.ready().then(() => {
      ready = true;
    });
    // The thread loads its modules before it can merge: not ready in the same turn.
    expect(ready).toBe(false);
    await waiting;
    expect(ready).toBe(true);
    await expect(edge.ready()).resolves.toBeUndefined();
  });

  it('rejects ready() when closed before its thread started', async () => {
    edge = new MergeThreadEdge(VOCAB);
    await edge.close();
    await expect(edge.ready()).rejects.toThrow(/closed|exited/);
  });

  it('fails pending and later tries once closed', async () => {
    edge = new MergeThreadEdge(VOCAB);
    await edge.close();
    await expect(edge.trieFor('dee', [1, 2, 3])).rejects.toThrow(/closed/);
  });
});
