/**
 * The pool's seeded sampler (gpu-pool/runtime/sampling.ts, sampleWithNoise)
 * on the real model's logits: µs per sample at T = 1 and 0.7, with and
 * without top-p. The logits are those of sampled continuations of the
 * development workload's first prompts.
 * Usage: npx tsx launcher/bench-sampling.ts [--prompts N] [--tokens N] [--rounds N]
 * Needs the development data beside the repository (../shared, or SSSD_SHARED_DIR).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadWorkload } from '../gpu-pool/bench/workload';
import { loadModel } from '../gpu-pool/model/load-model';
import { generate } from '../gpu-pool/runtime/generate';
import { ModelRunner } from '../gpu-pool/runtime/model-runner';
import { sampleWithNoise } from '../gpu-pool/runtime/sampling';
import { GumbelNoise } from '../shared/sampling/gumbel-noise';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import { numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';
import { sharedFile } from './stack';

await runBenchmark(async () => {
  const values = parseBenchFlags(
    {
      prompts: { type: 'string', default: '8' },
      tokens: { type: 'string', default: '100' },
      rounds: { type: 'string', default: '20' },
    },
    process.argv.slice(2),
    'npm run bench:sampling -- [options]\nThe pool\'s seeded sampler on the real model\'s logits: microseconds per sample at T = 1 and 0.7, with and without top-p.',
  );
  const promptCount = numberFlag('prompts', values.prompts, { integer: true, min: 1 });
  const tokens = numberFlag('tokens', values.tokens, { integer: true, min: 1, max: 4096 });
  const rounds = numberFlag('rounds', values.rounds, { integer: true, min: 1 });
  const tokenizer = loadTokenizer(new Uint8Array(readFileSync(sharedFile('models/stories260K/tok512.bin'))));
  const prompts = (await loadWorkload(sharedFile('workloads/dev-sessions.jsonl'))).slice(0, promptCount).map((r) => tokenizer.encode(r.prompt, { bos: true }));

  const runner = await ModelRunner.create(await loadModel(sharedFile('models/stories260K/stories260K.bin')));
  const logits: Float32Array[] = [];
  for (const [i, promptIds] of prompts.entries()) {
    await generate(runner, [{ promptIds, maxTokens: tokens, temperature: 1, seed: 5 + i }], {
      onLogits: (_j, l) => logits.push(Float32Array.from(l)),
    });
  }
  await runner.dispose();

  const scratch = new Float32Array(runner.config.vocabSize);
  const configs = [1, 0.7].flatMap((temperature) => [1, 0.95].map((topP) => ({ temperature, topP, topK: 0 })));
  /** µs per sample over every logits row, `rounds` times (each at fresh sequence indices). */
  const time = (opts: (typeof configs)[number]): { us: number; checksum: number } => {
    const noise = new GumbelNoise(123);
    let checksum = 0;
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) for (let i = 0; i < logits.length; i++) checksum += sampleWithNoise(logits[i], opts, scratch, noise, i + r * 1000);
    return { us: ((performance.now() - t0) * 1000) / (rounds * logits.length), checksum };
  };
  // Interleaved passes over the configurations, the fastest of 5 kept: the first pass
  // of a process runs before the JIT has settled, and the machine's speed drifts.
  const best = configs.map(() => Infinity);
  const sums = configs.map(() => 0);
  for (let pass = 0; pass < 5; pass++) {
    configs.forEach((opts, c) => {
      const { us, checksum } = time(opts);
      best[c] = Math.min(best[c], us);
      sums[c] = checksum;
    });
  }
  configs.forEach((opts, c) => {
    process.stdout.write(`T=${opts.temperature} top_p=${opts.topP}: ${best[c].toFixed(2)} µs per sample (fastest of 5 passes over ${rounds * logits.length}; token checksum ${sums[c]})\n`);
  });
});
