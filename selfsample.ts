import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { loadModel } from './gpu-pool/model/load-model';
import { ModelRunner } from './gpu-pool/runtime/model-runner';
import { generate } from './gpu-pool/runtime/generate';
import { loadTokenizer } from './shared/tokenizer/load-tokenizer';
const n = Number(process.argv[2] ?? 1500);
const temp = Number(process.argv[3] ?? 1);
const model = await loadModel('../shared/models/stories260K/stories260K.bin');
const tok = loadTokenizer(new Uint8Array(readFileSync('../shared/models/stories260K/tok512.bin')), 'llama2c');
const runner = await ModelRunner.create(model, { threads: 2 });
const t0 = performance.now();
const lines: string[] = [];
for (let i = 0; i < n; i += 64) {
  const batch = Array.from({ length: Math.min(64, n - i) }, (_, j) => ({ promptIds: [model.config.bosId], maxTokens: 300, temperature: temp, seed: 1_000_003 + i + j }));
  const res = await generate(runner, batch);
  for (const r of res) {
    const out = r.outputIds.filter((id) => !model.config.eosIds.includes(id));
    lines.push(JSON.stringify({ text: tok.decode(out).trim() }));
  }
}
writeFileSync(process.argv[4] ?? '/tmp/selfcorpus.jsonl', lines.join('\n') + '\n');
console.log(`${n} samples in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
await runner.dispose();
