/**
 * Another tenant's time to first token while one tenant alone holds every
 * row with long generations, with and without --preempt (docs/protocol.md,
 * "Admission"): for each pool shape, a fresh `sssd pool` per sample (the hog
 * must be alone from the start, as after a minute with no other tenant),
 * `rows + 32` hog streams of `--max-tokens` each, and once every running one
 * streams, one request of a new tenant.
 *
 *   npx tsx gpu-pool/bench/preemption-ttft.ts [--port 9253] [--samples 3] [--max-tokens 500] [--rows 4,128] [--model M --tokenizer T]
 *
 * The model: stories260K from the shared data ($SSSD_SHARED_DIR, else ../shared).
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import path from 'node:path';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9253' },
    samples: { type: 'string', default: '3' },
    'max-tokens': { type: 'string', default: '500' },
    rows: { type: 'string', default: '4,128' },
    model: { type: 'string', default: path.join(process.env.SSSD_SHARED_DIR ?? path.resolve('..', 'shared'), 'models/stories260K/stories260K.bin') },
    tokenizer: { type: 'string', default: path.join(process.env.SSSD_SHARED_DIR ?? path.resolve('..', 'shared'), 'models/stories260K/tok512.bin') },
  },
});
const port = Number(values.port);
const samples = Number(values.samples);
const maxTokens = Number(values['max-tokens']);
const token = 'preemption-ttft';

async function startPool(args: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['bin/sssd.mjs', 'pool', '--model', values.model, '--tokenizer', values.tokenizer, '--port', String(port), ...args], {
    env: { ...process.env, SSSD_POOL_TOKEN: token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /pool listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`pool exited with ${code}: ${log}`)));
  });
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

/** Opens a generation; resolves `firstTokens` with the time (performance.now()) of its first tokens event. */
async function open(url: string, id: string, tenant: string, tokens: number, signal?: AbortSignal): Promise<{ firstTokens: Promise<number>; ended: Promise<void> }> {
  const res = await fetch(`${url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, promptIds: [1, 403, 407], maxTokens: tokens, ignoreEos: true, tenant }),
    signal,
  });
  if (res.status !== 200) throw new Error(`${id}: ${res.status} ${await res.text()}`);
  let first: (at: number) => void = () => undefined;
  const firstTokens = new Promise<number>((r) => (first = r));
  const ended = (async () => {
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (decoder.decode(value, { stream: true }).includes('"type":"tokens"')) first(performance.now());
      }
    } catch {
      // Aborted.
    }
    first(NaN);
  })();
  return { firstTokens, ended };
}

async function metric(url: string, name: string): Promise<number> {
  // The pool started here inherits SSSD_METRICS_TOKEN, so its /metrics wants it where set.
  const token = process.env.SSSD_METRICS_TOKEN?.trim();
  const res = await fetch(`${url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!res.ok) throw new Error(`GET ${url}/metrics answered ${res.status}`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

async function sample(rows: number, preempt: boolean): Promise<number> {
  const pool = await startPool(['--max-active', String(rows), preempt ? '--preempt' : '--no-preempt']);
  try {
    const abort = new AbortController();
    const hog = await Promise.all(Array.from({ length: rows + 32 }, (_, i) => open(pool.url, `hog${i}`, 'hog', maxTokens, abort.signal)));
    // Every row running and streaming: the rows' generations first (the queued ones wait for them).
    await Promise.all(hog.slice(0, rows).map((h) => h.firstTokens));
    const sentAt = performance.now();
    const b = await open(pool.url, 'b', 'b', 8);
    const ttft = (await b.firstTokens) - sentAt;
    await b.ended;
    const preemptions = await metric(pool.url, 'sssd_pool_preemptions_total');
    abort.abort();
    await Promise.all(hog.map((h) => h.ended));
    console.log(`rows ${rows} ${preempt ? '--preempt' : '--no-preempt'}: ${(ttft / 1000).toFixed(3)} s to b's first token (preemptions ${preemptions})`);
    return ttft;
  } finally {
    await pool.stop();
  }
}

for (const rows of values.rows.split(',').map(Number)) {
  for (const preempt of [true, false]) {
    const ttfts: number[] = [];
    for (let i = 0; i < samples; i++) ttfts.push(await sample(rows, preempt));
    ttfts.sort((a, b) => a - b);
    console.log(`== rows ${rows} ${preempt ? '--preempt' : '--no-preempt'}: median ${(ttfts[Math.floor(ttfts.length / 2)] / 1000).toFixed(3)} s, all ${ttfts.map((t) => (t / 1000).toFixed(3)).join(' ')}`);
  }
}
