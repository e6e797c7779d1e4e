// Stored responses on workerd's own KV (Miniflare, as `wrangler dev` runs it);
// a KV that throws stands in only for an outage.
import { beforeEach, describe, expect, it } from 'vitest';
import { ResponseStore } from '../../edge/response-store';
import { StorageBudget } from '../../edge/storage-budget';
import { StorageMeter } from '../../edge/storage-meter';
import { storedRecord as record } from '../support/stored-response';
import { workerdKv } from '../support/workerd-kv';

const workerd = workerdKv();
let kv: KVNamespace;
beforeEach(() => {
  kv = workerd();
});

describe('ResponseStore', () => {
  it("keeps a key's responses its own: another key's store finds none of them", async () => {
    const a = new ResponseStore(kv, 'key-a', 0, 1 << 20);
    const b = new ResponseStore(kv, 'key-b', 0, 1 << 20);
    const stored = record('resp_a1');
    expect(await a.put(stored)).toBe(true);
    expect(await a.get('resp_a1')).toEqual(stored);
    expect(await b.get('resp_a1')).toBeNull();
    expect(await b.delete('resp_a1')).toBe(false);
    expect(await a.get('resp_a1')).not.toBeNull();
    expect(await a.delete('resp_a1')).toBe(true);
    expect(await a.get('resp_a1')).toBeNull();
  });

  it('sets the expiration from its TTL (KV takes 60 s at least), and none at 0', async () => {
    const before = Date.now() / 1000;
    await new ResponseStore(kv, 'key-ttl', 30 * 86_400, 1 << 20).put(record('resp_ttl'));
    await new ResponseStore(kv, 'key-short', 5, 1 << 20).put(record('resp_short'));
    await new ResponseStore(kv, 'key-forever', 0, 1 << 20).put(record('resp_forever'));
    const expiration = async (store: ResponseStore, id: string): Promise<number | undefined> => {
      const name = await store.keyFor(id);
      return (await kv.list({ prefix: name })).keys.find((k) => k.name === name)?.expiration;
    };
    expect(await expiration(new ResponseStore(kv, 'key-ttl', 0, 0), 'resp_ttl')).toBeGreaterThanOrEqual(Math.floor(before + 30 * 86_400));
    const short = (await expiration(new ResponseStore(kv, 'key-short', 0, 0), 'resp_short'))!;
    expect(short - before).toBeGreaterThanOrEqual(59);
    expect(short - before).toBeLessThan(120);
    expect(await expiration(new ResponseStore(kv, 'key-forever', 0, 0), 'resp_forever')).toBeUndefined();
  });

  it('keeps a response over its size cap alone (without its conversation), or not at all where even that is over, and never throws where KV fails', async () => {
    const store = new ResponseStore(kv, 'key-cap', 0, 2048);
    expect(await store.put(record('resp_small'))).toBe(true);
    expect(await store.put(record('resp_big', 'x'.repeat(4096)))).toBe(false);
    expect(await store.get('resp_big')).toBeNull();
    // The cap is bytes, not characters: a record of euro signs (3 bytes each) under the cap in characters is over it in bytes.
    const euros = record('resp_euros', '€'.repeat(300));
    const json = JSON.stringify(euros);
    const bytes = new TextEncoder().encode(json).length;
    const between = new ResponseStore(kv, 'key-cap', 0, Math.floor((json.length + bytes) / 2));
    expect(json.length).toBeLessThan(Math.floor((json.length + bytes) / 2));
    // Over in bytes: the response alone is kept (its output is in it once, not twice as with the conversation).
    expect(await between.put(euros)).toBe(true);
    expect(await between.get('resp_euros')).toMatchObject({ conversationNotKept: true, conversation: [], inputItems: [], response: { output: euros.response.output } });
    expect(await new ResponseStore(kv, 'key-cap', 0, bytes).put(euros)).toBe(true);
    expect((await between.get('resp_euros'))?.conversationNotKept).toBeUndefined();
    // Deleted once: found, then gone.
    expect(await store.delete('resp_small')).toBe(true);
    expect(await store.delete('resp_small')).toBe(false);
    expect(await store.get('resp_small')).toBeNull();
    const failing = { put: () => Promise.reject(new Error('KV PUT failed: 503')), get: () => Promise.reject(new Error('KV GET failed: 503')) } as unknown as KVNamespace;
    const down = new ResponseStore(failing, 'key-down', 0, 1 << 20);
    expect(await down.put(record('resp_down'))).toBe(false);
    await expect(down.get('resp_down')).rejects.toMatchObject({ status: 503, code: 'response_store_unavailable' });
  });

  it("charges a generation's meter what it stores: a record the bytes of its value as kept, a background stream's events at their largest write (each replaces the last)", async () => {
    const budget = new StorageBudget();
    const perDay = 1 << 20;
    const meter = new StorageMeter({ take: (bytes) => budget.takeAll('s', 'k', bytes, perDay, 0), charge: (bytes) => budget.charge('s', 'k', bytes, perDay, 0) });
    const store = new ResponseStore(kv, 'key-meter', 0, 1 << 20, null, meter);
    const stored = record('resp_meter', 'x'.repeat(5_000));
    expect(await store.put(stored)).toBe(true);
    // Written twice (a background response queued, then ended): charged once.
    expect(await store.put(stored)).toBe(true);
    const recordBytes = new TextEncoder().encode((await kv.get(await store.keyFor('resp_meter')))!).byteLength;
    const frames = Array.from({ length: 6 }, (_, i) => `data: {"sequence_number":${i},"delta":"${'é'.repeat(500)}"}\n\n`);
    const frameBytes = frames.reduce((sum, frame) => sum + new TextEncoder().encode(frame).byteLength, 0);
    await store.writeEvents('resp_meter', frames.slice(0, 3), false);
    await store.writeEvents('resp_meter', frames, true);
    // The events' frames and their header line at its most (64 bytes).
    const charged = recordBytes + frameBytes + 64;
    expect(budget.take('s', 'k', perDay - charged, perDay, 0)).toBeNull();
    expect(budget.take('s', 'k', 1, perDay, 0)).not.toBeNull();
  });
});
