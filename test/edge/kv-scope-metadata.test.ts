// Every record a store writes names its data scope in its KV metadata, on workerd's own KV: its name is a hash that
// ties it to no key, and the metadata is what an operator lists a tenant's records by to erase them (review h150).
import { describe, expect, it } from 'vitest';
import { ChatCompletionStore } from '../../edge/chat-completion-store';
import { RECORD_KINDS, writeScopedRecords } from '../support/scoped-records';
import { workerdKv } from '../support/workerd-kv';

const kv = workerdKv();

/** Every name in the namespace with its metadata. */
async function listAll(namespace: KVNamespace): Promise<{ name: string; metadata?: unknown }[]> {
  const keys: { name: string; metadata?: unknown }[] = [];
  let cursor: string | undefined;
  do {
    const page = await namespace.list({ ...(cursor ? { cursor } : {}) });
    keys.push(...page.keys);
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return keys;
}

const kindOf = (name: string): string => name.slice(0, name.indexOf(':'));

describe('stored records name their data scope in KV metadata', () => {
  it("every write of every store carries its scope, so each scope's records are told apart by a list", async () => {
    const [a, b] = ['aaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbb'];
    await writeScopedRecords(kv(), a);
    await writeScopedRecords(kv(), b);
    const keys = await listAll(kv());
    // Not one record without a scope, of either.
    expect(keys.filter((key) => (key.metadata as { scope?: unknown } | undefined)?.scope === undefined).map((key) => key.name)).toEqual([]);
    for (const scope of [a, b]) {
      const own = keys.filter((key) => (key.metadata as { scope: string }).scope === scope);
      expect([...new Set(own.map((key) => kindOf(key.name)))].sort()).toEqual([...RECORD_KINDS]);
      // Two completions' ascending and descending index entries (the deleted one's marked gone), two completions'
      // records less the deleted one, its mark: the index keeps its own metadata beside the scope.
      expect(own.filter((key) => kindOf(key.name) === 'chatcmplidx')).toHaveLength(4);
      expect(own.filter((key) => kindOf(key.name) === 'chatcmpl')).toHaveLength(1);
      // A stream's kept events and another run's heartbeat.
      expect(own.filter((key) => kindOf(key.name) === 'respevents')).toHaveLength(2);
    }
    expect(keys).toHaveLength(2 * (RECORD_KINDS.length + 4));
    // The index still lists by its own metadata, the scope beside it.
    const listed = await new ChatCompletionStore(kv(), a, 0, 1 << 20).list({ order: 'desc', limit: 20, after: null, model: 'm', metadata: { run: '1' } });
    expect(listed.data.map((c) => (c as { id: string }).id)).toEqual([`chatcmpl-${a}-kept`]);
  });
});
