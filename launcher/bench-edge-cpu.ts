/**
 * Edge CPU time per request, measured inside workerd (POST /bench/edge-cpu):
 * tokenize + user-cache decode + edge-trie draft + merge, with a user history
 * of model-written stories. Usage: npx tsx launcher/bench-edge-cpu.ts [--history N] [--repeat N]
 * Needs the development data beside the repository (../sharedDir).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sharedDir, startStack } from './stack';

const { values } = parseArgs({
  options: {
    history: { type: 'string', default: '8' },
    repeat: { type: 'string', default: '300' },
    requests: { type: 'string', default: '8' },
  },
});
const stories = readFileSync(path.join(sharedDir, 'workloads/datastore-corpus.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { text?: string; story?: string })
  .map((o) => o.text ?? o.story ?? '');
const sessions = readFileSync(path.join(sharedDir, 'workloads/dev-sessions.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { prompt: string });

const persistTo = mkdtempSync(path.join(tmpdir(), 'sssd-bench-kv-'));
const stack = await startStack({
  model: path.join(sharedDir, 'models/stories260K/stories260K.bin'),
  tokenizer: path.join(sharedDir, 'models/stories260K/tok512.bin'),
  devKey: 'bench-key',
  persistTo,
  vars: { SSSD_BENCH_ROUTES: '1' },
});
try {
  const historyCount = Number(values.history);
  const rows: Array<Record<string, number>> = [];
  for (let r = 0; r < Number(values.requests); r++) {
    const history = stories.slice(r * historyCount, (r + 1) * historyCount);
    const res = await fetch(`${stack.edgeUrl}/bench/edge-cpu`, {
      method: 'POST',
      headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: sessions[r].prompt, history, output: stories[1000 + r], repeat: Number(values.repeat) }),
    });
    if (!res.ok) throw new Error(`bench route answered ${res.status}: ${await res.text()}`);
    const figures = (await res.json()) as { cacheBytes: number; promptTokens: number; trieBytes: number; baselineMs: number; microseconds: Record<string, number> };
    rows.push({ cacheBytes: figures.cacheBytes, promptTokens: figures.promptTokens, trieBytes: figures.trieBytes, baselineMs: figures.baselineMs, ...figures.microseconds });
  }
  const keys = Object.keys(rows[0]);
  const mean = Object.fromEntries(keys.map((k) => [k, rows.reduce((s, row) => s + row[k], 0) / rows.length]));
  console.log(`edge CPU per request inside workerd (${rows.length} users, ${historyCount} stories of history each, ${values.repeat} repeats per part), microseconds:`);
  console.table(rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v.toFixed(1))]))));
  console.log('mean', Object.fromEntries(Object.entries(mean).map(([k, v]) => [k, Number(v.toFixed(1))])));
} finally {
  await stack.stop();
  rmSync(persistTo, { recursive: true, force: true });
}
