import { loadModel } from './gpu-pool/model/load-model';
import { ModelRunner } from './gpu-pool/runtime/model-runner';
import { ReferenceForward } from './gpu-pool/model/reference-forward';
function maxDiff(a: Float32Array, b: Float32Array) { let m = 0; for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; }
const model = await loadModel('../shared/models/stories260K/stories260K.bin');
const C = model.config.contextLength;
let seed = Number(process.env.SEED ?? 7);
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const tok = () => 1 + Math.floor(rand() * 500);
for (const opts of [{ splitOverheadTokens: 4 }, { residentKv: true }, { packedOutputs: true, splitOverheadTokens: 4 }]) {
  const runner = await ModelRunner.create(model, { cacheDir: '/tmp/review-runtime/graphs', maxSequences: 3, ...opts } as any);
  let worst = 0; let checks = 0;
  type Seq = { cache: any; hist: number[]; pendingChain: number[] };
  const live: Seq[] = [];
  const finished: Seq[] = [];
  const newSeq = (): Seq => {
    const cache = runner.newSequence(1 + Math.floor(rand() * 40));
    const hist = Array.from({ length: 1 + Math.floor(rand() * 120) }, tok);
    // prefix copy from a finished one sometimes (host only)
    if (!opts.residentKv && finished.length && rand() < 0.5) {
      const src = finished[Math.floor(rand() * finished.length)];
      const len = Math.floor(rand() * src.cache.length);
      runner.copyPrefix(src.cache, cache, len);
      const h = [...src.hist.slice(0, len), ...hist];
      return { cache, hist: h, pendingChain: h.slice(len) };
    }
    return { cache, hist, pendingChain: hist.slice() };
  };
  for (let i = 0; i < 6; i++) live.push(newSeq());
  for (let step = 0; step < 40; step++) {
    const rows = live.map((s) => {
      const chain = s.pendingChain;
      const tokens = [...chain]; const parents = chain.map((_, i) => i - 1);
      const nTree = rand() < 0.5 ? Math.floor(rand() * 10) : 0;
      for (let i = 0; i < nTree; i++) { tokens.push(tok()); parents.push(chain.length - 1 + Math.floor(rand() * (i + 1))); }
      // fix: parents for tree nodes must be < index: chain.length-1 + k where k<=i → index chain.length+i > that
      return { tokens, parents };
    });
    // cap by context
    for (let r = 0; r < live.length; r++) {
      const s = live[r];
      const base = s.cache.length;
      // drop tree nodes exceeding context
      const depth: number[] = [];
      const keep: number[] = [];
      rows[r].tokens.forEach((_, i) => { depth[i] = i === 0 ? 0 : depth[rows[r].parents[i]] + 1; });
    }
    const res = await runner.step(live.map((s, r) => ({ cache: s.cache, row: { tokens: Int32Array.from(rows[r].tokens), parents: Int32Array.from(rows[r].parents) } })));
    const nextLive: Seq[] = [];
    for (let r = 0; r < live.length; r++) {
      const s = live[r]; const { tokens, parents } = rows[r];
      const pastHist = s.hist.slice(0, s.cache.length);
      const pathOf = (i: number) => { const p: number[] = []; for (let j = i; j >= 0; j = parents[j]) p.unshift(j); return p; };
      const ref = new ReferenceForward(model.config, model.weights);
      for (const t of pastHist) ref.forward(t);
      // check every node via fresh references from the past (cheap model)
      for (let i = 0; i < tokens.length; i += 1) {
        if (rand() < 0.6 && i !== tokens.length - 1) continue;
        const rf = new ReferenceForward(model.config, model.weights);
        let l!: Float32Array;
        for (const t of [...pastHist, ...pathOf(i).map((j) => tokens[j])]) l = rf.forward(t);
        worst = Math.max(worst, maxDiff(res.logitsAt(r, i), l)); checks++;
      }
      const chainLen = s.pendingChain.length;
      // accept: chain + a random path below chain end
      const cands = [chainLen - 1]; for (let i = chainLen; i < tokens.length; i++) cands.push(i);
      const leaf = cands[Math.floor(rand() * cands.length)];
      const path = pathOf(leaf);
      if (s.cache.length + path.length + 12 >= C || rand() < 0.08) { finished.push(s); if (finished.length > 4) finished.shift()!.cache.release(); if (opts.residentKv) s.cache.release(); nextLive.push(newSeq()); continue; }
      res.commit(r, path);
      const newHist = [...pastHist, ...path.map((j) => tokens[j]), tok()];
      s.hist = newHist; s.pendingChain = [newHist[newHist.length - 1]];
      nextLive.push(s);
    }
    // shuffle order sometimes
    if (rand() < 0.3) nextLive.reverse();
    live.length = 0; live.push(...nextLive);
  }
  console.log(JSON.stringify(opts), 'worst', worst, 'checks', checks, runner.stepCounts, runner.residentSlots);
  await runner.dispose();
}
