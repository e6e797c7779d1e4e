/**
 * workerd's own KV (Miniflare, as `wrangler dev` runs it) for a test file:
 * its hooks are registered here, and the namespace is read once they ran.
 */
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll } from 'vitest';

export function workerdKv(): () => KVNamespace {
  let miniflare: Miniflare | undefined;
  let kv: KVNamespace | undefined;
  beforeAll(async () => {
    miniflare = new Miniflare({ modules: true, script: 'export default { fetch() { return new Response(null); } }', kvNamespaces: ['SSSD_KV'], compatibilityDate: '2025-01-01' });
    kv = (await miniflare.getKVNamespace('SSSD_KV')) as unknown as KVNamespace;
  });
  afterAll(async () => {
    await miniflare?.dispose();
  });
  return () => {
    if (kv === undefined) throw new Error('workerdKv() is read in a test, after its beforeAll');
    return kv;
  };
}
