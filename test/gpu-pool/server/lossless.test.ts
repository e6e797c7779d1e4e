/**
 * Speculation is lossless under greedy decoding: every stories260K fixture
 * (llama2.c run.c outputs) comes out of the real pool token for token with
 * speculation `off` and `sssd` (context trie + an edge trie), sent one at a
 * time and all at once mixed with sampled requests.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserCache, mergeIntoUserCache } from '../../../shared/drafting/user-cache';
import { draftEdgeTrie } from '../../../shared/drafting/edge-trie';
import { models } from '../../support/shared-data';
import { suiteProvider } from '../../support/execution-provider';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { generate as generateLocally } from '../../../gpu-pool/runtime/generate';
import { generate, metricValue, startPool, type GenerateBody, type PoolProcess } from './pool-process';

interface Fixture {
  prompt_ids: number[];
  output_ids: number[];
}

const fixtures = readFileSync(models.stories260K.fixtures, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Fixture);

// The edge's view: a user cache that has seen other stories (never this one's
// output, which would make drafting trivial), shipped as a trie with each request.
function edgeTrieFor(index: number): string {
  let cache: Uint8Array | null = null;
  fixtures.forEach((f, i) => {
    if (i !== index) cache = mergeIntoUserCache(cache, [...f.prompt_ids, ...f.output_ids]);
  });
  const trie = draftEdgeTrie(UserCache.decode(cache), fixtures[index].prompt_ids, { maxNodes: 64 });
  return Buffer.from(trie).toString('base64');
}

function greedyBody(i: number, speculation: 'off' | 'sssd'): GenerateBody {
  const f = fixtures[i];
  return {
    id: `fx-${speculation}-${i}-${Math.random().toString(36).slice(2)}`,
    promptIds: f.prompt_ids,
    maxTokens: f.output_ids.length,
    speculation,
    ...(speculation === 'sssd' ? { trie: edgeTrieFor(i) } : {}),
  };
}

let pool: PoolProcess;
beforeAll(async () => {
  pool = await startPool();
});
afterAll(async () => {
  await pool?.stop();
});

describe('greedy output through the pool equals run.c, with and without speculation', () => {
  it('one request at a time', async () => {
    let accepted = 0;
    for (let i = 0; i < fixtures.length; i++) {
      const off = await generate(pool, greedyBody(i, 'off'));
      expect(off.status).toBe(200);
      expect(off.ids, `fixture ${i} (off)`).toEqual(fixtures[i].output_ids);
      const sssd = await generate(pool, greedyBody(i, 'sssd'));
      expect(sssd.ids, `fixture ${i} (sssd)`).toEqual(fixtures[i].output_ids);
      const last = fixtures[i].output_ids.at(-1);
      expect(sssd.done?.finishReason).toBe(last === 1 ? 'stop' : 'length');
      accepted += sssd.done!.usage.speculation.acceptedTokens;
      // Multi-token steps are streamed whole: accepted drafts + the bonus (fewer only at the end).
      const steps = sssd.events.filter((e) => e.type === 'tokens');
      steps.forEach((e, k) => {
        expect(e.sources.length).toBe(e.ids.length);
        if (k < steps.length - 1) expect(e.ids.length).toBe(e.accepted + 1);
      });
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it('all at once, mixed with sampled requests', async () => {
    const greedy = fixtures.flatMap((_, i) => [greedyBody(i, 'off'), greedyBody(i, 'sssd')]);
    const sampled: GenerateBody[] = fixtures.slice(0, 6).flatMap((f, i) =>
      (['sssd', 'off'] as const).map((speculation) => ({
        id: `sampled-${speculation}-${i}`,
        promptIds: f.prompt_ids,
        maxTokens: 64,
        sampling: { temperature: 0.8, topP: 0.9, seed: 1000 + i },
        speculation,
      })),
    );
    const all = [...greedy, ...sampled].sort(() => Math.random() - 0.5);
    const results = await Promise.all(all.map((b) => generate(pool, b)));
    all.forEach((body, k) => {
      const r = results[k];
      expect(r.status, body.id).toBe(200);
      expect(r.done, body.id).toBeDefined();
      if (body.id.startsWith('fx-')) {
        const i = Number(body.id.split('-')[2]);
        expect(r.ids, body.id).toEqual(fixtures[i].output_ids);
      } else {
        expect(r.ids.length).toBeGreaterThan(0);
        expect(r.ids.length).toBeLessThanOrEqual(64);
      }
    });
    // A seeded sampled request gives the same tokens with and without speculation, even in a mixed batch.
    const byId = new Map(all.map((b, k) => [b.id, results[k].ids]));
    for (let i = 0; i < 6; i++) expect(byId.get(`sampled-sssd-${i}`), `sampled ${i}`).toEqual(byId.get(`sampled-off-${i}`));
  });

  it('rows with short and long pasts in one batch, attending apart, give run.c\'s tokens', async () => {
    // A fixture's prompt plus the first 180 tokens of its output continues with
    // the rest of the output (greedy decoding is deterministic): long pasts
    // beside the other fixtures' short ones, so steps run in two attention groups.
    const long = (i: number, speculation: 'off' | 'sssd'): GenerateBody => {
      const f = fixtures[i];
      return { id: `long-${speculation}-${i}`, promptIds: [...f.prompt_ids, ...f.output_ids.slice(0, 180)], maxTokens: f.output_ids.length - 180, speculation };
    };
    const grouped = (): Promise<number> => metricValue(pool, 'sssd_pool_runner_steps_total', 'kind="grouped"');
    const before = await grouped();
    const bodies = [
      ...[0, 1, 2, 3, 4, 5].flatMap((i) => [greedyBody(i, 'off'), greedyBody(i, 'sssd')]),
      ...[6, 7, 8, 9].flatMap((i) => [long(i, 'off'), long(i, 'sssd')]),
    ];
    const results = await Promise.all(bodies.map((b) => generate(pool, b)));
    bodies.forEach((body, k) => {
      const i = Number(body.id.split('-')[2]);
      const want = body.id.startsWith('long-') ? fixtures[i].output_ids.slice(180) : fixtures[i].output_ids;
      expect(results[k].ids, body.id).toEqual(want);
    });
    // Two attention groups are a CPU layout (host keys/values); a GPU provider keeps them resident and never groups.
    if (suiteProvider === 'cpu') expect(await grouped()).toBeGreaterThan(before);
  });

  it('sampled generations are reproducible for a seed, and the same with or without speculation', async () => {
    const body = (id: string, speculation: 'off' | 'sssd'): GenerateBody => ({
      id,
      promptIds: fixtures[3].prompt_ids,
      maxTokens: 48,
      sampling: { temperature: 1, topP: 0.95, seed: 77 },
      speculation,
    });
    const a = await generate(pool, body('seed-a', 'sssd'));
    const b = await generate(pool, body('seed-b', 'sssd'));
    expect(a.ids).toEqual(b.ids);
    const c = await generate(pool, body('seed-c', 'off'));
    expect(c.ids).toEqual(a.ids);
    // ...and the same as the runtime's own batched sampler for that seed.
    const runner = await ModelRunner.create(await loadModel(models.stories260K.checkpoint));
    const [local] = await generateLocally(runner, [{ promptIds: fixtures[3].prompt_ids, maxTokens: 48, temperature: 1, topP: 0.95, topK: 0, seed: 77 }]);
    expect(a.ids).toEqual(local.outputIds);
  });
});
