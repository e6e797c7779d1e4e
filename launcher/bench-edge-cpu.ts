/**
 * Edge CPU time per request, measured inside workerd (POST /bench/edge-cpu):
 * tokenize + user-cache decode + edge-trie draft + merge + reading the
 * output back from the pool as event frames (and, apart, as NDJSON), with a
 * user history of model-written stories.
 * Usage: npx tsx launcher/bench-edge-cpu.ts [--history N] [--repeat N] [--requests N] [--step-tokens N] [--json]
 * Needs the development data beside the repository (../shared, or SSSD_SHARED_DIR).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadWorkload } from '../gpu-pool/bench/workload';
import { CliError } from '../gpu-pool/cli/cli-error';
import { numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';
import { sharedFile, startStack } from './stack';

/** The output of request r is corpus story OUTPUT_FROM + r, past every user's history. */
const OUTPUT_FROM = 1000;

await runBenchmark(async () => {
  const values = parseBenchFlags(
    {
      history: { type: 'string', default: '8' },
      repeat: { type: 'string', default: '300' },
      requests: { type: 'string', default: '8' },
      'step-tokens': { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
    },
    process.argv.slice(2),
    'npm run bench:edge-cpu -- [options]\nEdge CPU time per request inside workerd (POST /bench/edge-cpu): tokenize, user-cache decode, edge-trie draft, merge, and the output read back as pool events (--step-tokens a step), with a user history of model-written stories.',
  );
  const historyCount = numberFlag('history', values.history, { integer: true, min: 0, max: 256 });
  // The bench route's own bound on repeats; it also refuses a run past its work bound (docs/edge.md, Benchmarks), with a 400 naming repeat.
  const repeat = numberFlag('repeat', values.repeat, { integer: true, min: 1, max: 100_000 });
  const requests = numberFlag('requests', values.requests, { integer: true, min: 1 });
  const stepTokens = numberFlag('step-tokens', values['step-tokens'], { integer: true, min: 1, max: 64 });
  const stories = readFileSync(sharedFile('workloads/datastore-corpus.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text?: string; story?: string })
    .map((o) => o.text ?? o.story ?? '');
  const sessions = await loadWorkload(sharedFile('workloads/dev-sessions.jsonl'));
  if (requests > sessions.length) throw new CliError(`--requests must be at most ${sessions.length} (the workload's prompts), not ${requests}`);
  if (requests * historyCount > OUTPUT_FROM || OUTPUT_FROM + requests > stories.length) {
    throw new CliError(`--requests ${requests} × --history ${historyCount} needs more stories than the corpus holds (${stories.length})`);
  }

  const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-bench-kv-'));
  const stack = await startStack({
    model: sharedFile('models/stories260K/stories260K.bin'),
    tokenizer: sharedFile('models/stories260K/tok512.bin'),
    devKey: 'bench-key',
    persistTo,
    vars: { SSSD_BENCH_ROUTES: '1' },
  });
  try {
    const rows: Array<Record<string, number>> = [];
    for (let r = 0; r < requests; r++) {
      const history = stories.slice(r * historyCount, (r + 1) * historyCount);
      const res = await fetch(`${stack.edgeUrl}/bench/edge-cpu`, {
        method: 'POST',
        headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: sessions[r].prompt, history, output: stories[OUTPUT_FROM + r], repeat, stepTokens }),
      });
      if (!res.ok) throw new Error(`bench route answered ${res.status}: ${await res.text()}`);
      const figures = (await res.json()) as { cacheBytes: number; promptTokens: number; trieBytes: number; poolEventCount: number; baselineMs: number; microseconds: Record<string, number> };
      rows.push({ cacheBytes: figures.cacheBytes, promptTokens: figures.promptTokens, trieBytes: figures.trieBytes, poolEventCount: figures.poolEventCount, baselineMs: figures.baselineMs, ...figures.microseconds });
    }
    const keys = Object.keys(rows[0]);
    const mean = Object.fromEntries(keys.map((k) => [k, rows.reduce((s, row) => s + row[k], 0) / rows.length]));
    if (values.json) {
      process.stdout.write(JSON.stringify({ users: rows.length, history: historyCount, repeat, stepTokens, rows, mean }, null, 2) + '\n');
      return;
    }
    console.log(`edge CPU per request inside workerd (${rows.length} users, ${historyCount} stories of history each, ${repeat} repeats per part, ${stepTokens} output token(s) a pool event), microseconds:`);
    console.table(rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v.toFixed(1))]))));
    console.log('mean', Object.fromEntries(Object.entries(mean).map(([k, v]) => [k, Number(v.toFixed(1))])));
  } finally {
    await stack.stop();
    rmSync(persistTo, { recursive: true, force: true });
  }
});
