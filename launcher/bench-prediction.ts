/**
 * Predicted outputs (`predictionIds`, OpenAI's `prediction`) against a
 * running pool: for the development workload's first prompts, greedy and at
 * temperature 0.8 (seeded), the output without speculation, then each method
 * with no prediction, the output itself as the prediction, and the output
 * with every --edit-every'th token changed (an edit). Prints tokens per step
 * and time per method and prediction, and fails if any output differs from
 * the one without speculation.
 * Usage: SSSD_POOL_TOKEN=… npx tsx launcher/bench-prediction.ts --pool URL [--prompts N] [--tokens N] [--edit-every K]
 * Needs the development data beside the repository (../shared).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadWorkload } from '../gpu-pool/bench/workload';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import type { PoolEvent } from '../shared/protocol';
import { CliError } from '../gpu-pool/cli/cli-error';
import { parsePoolUrl } from '../gpu-pool/cli/pool-url-flag';
import { numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';
import { sharedFile } from './stack';

interface Outcome {
  ids: number[];
  steps: number;
  ms: number;
}

await runBenchmark(async () => {
  const values = parseBenchFlags(
    {
      pool: { type: 'string', default: '' },
      prompts: { type: 'string', default: '8' },
      tokens: { type: 'string', default: '200' },
      'edit-every': { type: 'string', default: '25' },
    },
    process.argv.slice(2),
    'SSSD_POOL_TOKEN=... npm run bench:prediction -- --pool URL [options]\nPredicted outputs against a running pool: tokens per step and time per method, with no prediction, the output itself, and the output edited every --edit-every\'th token; fails if any output differs from the one without speculation.',
  );
  if (!values.pool) throw new CliError('--pool URL is required');
  const pool = parsePoolUrl(values.pool);
  const promptCount = numberFlag('prompts', values.prompts, { integer: true, min: 1 });
  const maxTokens = numberFlag('tokens', values.tokens, { integer: true, min: 1, max: 4096 });
  const editEvery = numberFlag('edit-every', values['edit-every'], { integer: true, min: 2 });
  const headers = { authorization: `Bearer ${process.env.SSSD_POOL_TOKEN ?? ''}`, 'content-type': 'application/json' };
  // Before the table: a pool that is not there, or refuses the token, is one line, not a stack after the header.
  const info = await fetch(`${pool}/v1/info`, { headers, signal: AbortSignal.timeout(10_000) }).catch((err: Error) => {
    throw new CliError(`cannot reach ${pool}/v1/info: ${err.cause instanceof Error ? err.cause.message : err.message}`);
  });
  await info.body?.cancel();
  if (info.status === 401) throw new CliError(`${pool} refused the token: set SSSD_POOL_TOKEN to the pool's`);
  if (!info.ok) throw new CliError(`${pool}/v1/info answered ${info.status}`);
  const tokenizer = loadTokenizer(new Uint8Array(readFileSync(sharedFile('models/stories260K/tok512.bin'))));
  const prompts = (await loadWorkload(sharedFile('workloads/dev-sessions.jsonl'))).slice(0, promptCount).map((r) => tokenizer.encode(r.prompt, { bos: true }));

  let serial = 0;
  const run = async (body: Record<string, unknown>): Promise<Outcome> => {
    const started = performance.now();
    const res = await fetch(`${pool}/v1/generate`, { method: 'POST', headers, body: JSON.stringify({ id: `bench-prediction-${process.pid}-${serial++}`, ...body }) });
    const text = await res.text();
    if (res.status !== 200) throw new CliError(`pool answered ${res.status}: ${text.slice(0, 200)}`, 1);
    const events = text.trim().split('\n').map((line) => JSON.parse(line) as PoolEvent);
    const tokenEvents = events.filter((e): e is Extract<PoolEvent, { type: 'tokens' }> => e.type === 'tokens');
    return { ids: tokenEvents.flatMap((e) => e.ids), steps: tokenEvents.length, ms: performance.now() - started };
  };

  let differs = 0;
  console.log('| temperature | method | prediction | tokens | steps | tokens/step | ms |');
  console.log('|---|---|---|---|---|---|---|');
  for (const temperature of [0, 0.8]) {
    const plain: Outcome[] = [];
    for (const [k, promptIds] of prompts.entries()) plain.push(await run({ promptIds, maxTokens, speculation: 'off', sampling: { temperature, seed: 5 + k } }));
    for (const method of ['context', 'sssd'] as const) {
      for (const kind of ['none', 'exact', 'edited'] as const) {
        const total = { tokens: 0, steps: 0, ms: 0 };
        for (const [k, promptIds] of prompts.entries()) {
          const base = plain[k].ids;
          const prediction = kind === 'none' ? null : kind === 'exact' ? base : base.map((t, i) => (i % editEvery === Math.floor(editEvery / 2) ? (t + 7) % tokenizer.vocabSize : t));
          const r = await run({ promptIds, maxTokens, speculation: method, sampling: { temperature, seed: 5 + k }, ...(prediction && prediction.length > 0 ? { predictionIds: prediction } : {}) });
          if (JSON.stringify(r.ids) !== JSON.stringify(base)) differs++;
          total.tokens += r.ids.length;
          total.steps += r.steps;
          total.ms += r.ms;
        }
        console.log(`| ${temperature} | ${method} | ${kind} | ${total.tokens} | ${total.steps} | ${(total.tokens / total.steps).toFixed(2)} | ${Math.round(total.ms)} |`);
      }
    }
  }
  if (differs > 0) throw new Error(`${differs} outputs differed from the output without speculation`);
  console.log('every output equals the one without speculation');
});
