/**
 * Output tokens/s per request after the first token, with and without an added
 * one-way delay between edge and pool (goal: ≤ 10% drop at 50 ms). One pool;
 * two edges, each through a loopback proxy (0 ms and the delay); the same
 * dev-sessions requests replayed one at a time through each (users renamed per
 * edge so both start with empty user caches).
 * Usage: npx tsx launcher/bench-edge-delay.ts [--delay 50] [--requests 48] [--max-tokens 256] [--speculation auto|off] [--json]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadWorkload, type WorkloadRequest } from '../gpu-pool/bench/workload';
import { CliError } from '../gpu-pool/cli/cli-error';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import { POOL_EVENT_FRAMES_ACCEPT } from '../shared/pool-event-frames';
import { poolEventFormat, readPoolEvents } from '../shared/pool-event-stream';
import { choiceFlag, numberFlag, parseBenchFlags, runBenchmark } from './bench-flags';
import { startDelayProxy, type DelayProxy } from './delay-proxy';
import { freePort } from './service-process';
import { generatePoolToken, sharedFile, startEdge, startPool, type RunningEdge, type RunningPool } from './stack';

type Session = WorkloadRequest;

interface Settings {
  delayMs: number;
  maxTokens: number;
  speculation: 'auto' | 'off';
  json: boolean;
  sessions: Session[];
}

/** The checked flags and the workload's first `--requests` sessions; throws CliError. */
async function readSettings(argv: string[]): Promise<Settings> {
  const raw = parseBenchFlags(
    {
      delay: { type: 'string', default: '50' },
      requests: { type: 'string', default: '48' },
      'max-tokens': { type: 'string', default: '256' },
      speculation: { type: 'string', default: 'auto' },
      json: { type: 'boolean', default: false },
    },
    argv,
    'npm run bench:edge-delay -- [options]\nOutput tokens/s per request after the first token, with and without a one-way delay (--delay ms) between edge and pool; --speculation auto|off.',
  );
  const delayMs = numberFlag('delay', raw.delay, { min: 0, max: 10_000 });
  const requests = numberFlag('requests', raw.requests, { integer: true, min: 1 });
  const maxTokens = numberFlag('max-tokens', raw['max-tokens'], { integer: true, min: 1, max: 4096 });
  // What the edge's completions API takes (edge/request-schema.ts).
  const speculation = choiceFlag('speculation', raw.speculation, ['auto', 'off'] as const);
  const workload = await loadWorkload(sharedFile('workloads/dev-sessions.jsonl'));
  if (requests > workload.length) throw new CliError(`--requests must be at most ${workload.length} (the workload's prompts), not ${requests}`);
  const sessions = workload.slice(0, requests);
  return { delayMs, maxTokens, speculation, json: raw.json, sessions };
}

// Read on first use, inside runBenchmark: a missing file is then said in one line, not thrown at module load.
let loaded: ReturnType<typeof loadTokenizer> | null = null;
const tokenizer = {
  encode: (text: string): number[] => (loaded ??= loadTokenizer(new Uint8Array(readFileSync(sharedFile('models/stories260K/tok512.bin'))))).encode(text),
};

interface Sample {
  tokens: number;
  firstTokenMs: number;
  afterFirstTokensPerS: number;
  meanAcceptance: number;
}

async function one(settings: Settings, edgeUrl: string, session: Session, userPrefix: string): Promise<Sample> {
  const t0 = performance.now();
  const res = await fetch(`${edgeUrl}/v1/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'default',
      prompt: session.prompt,
      max_tokens: settings.maxTokens,
      temperature: session.temperature,
      top_p: session.top_p,
      seed: session.seed,
      user: `${userPrefix}${session.user}`,
      speculation: settings.speculation,
      stream: true,
      stream_options: { include_usage: true, sources: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`edge answered ${res.status}: ${await res.text()}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let first = -1;
  let last = -1;
  type Usage = { completion_tokens: number; speculation: { mean_acceptance_length: number } };
  const got: { usage: Usage | null } = { usage: null };
  let firstChunkTokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = line.slice(6);
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as { choices: Array<{ text: string; sssd_sources?: unknown[] }>; usage?: Usage };
      if (chunk.usage) got.usage = chunk.usage;
      const c = chunk.choices[0];
      if (c && c.text.length > 0) {
        const now = performance.now();
        if (first < 0) {
          first = now;
          firstChunkTokens = c.sssd_sources?.length ?? 1;
        }
        last = now;
      }
    }
  }
  const tokens = got.usage?.completion_tokens ?? 0;
  const span = (last - first) / 1000;
  return {
    tokens,
    firstTokenMs: first - t0,
    afterFirstTokensPerS: span > 0 ? (tokens - firstChunkTokens) / span : NaN,
    meanAcceptance: got.usage?.speculation.mean_acceptance_length ?? 0,
  };
}

/** The pool's event stream read directly (no edge; frames, as the edge asks): isolates the link from the edge's own CPU cost. */
async function poolOnly(settings: Settings, baseUrl: string, session: Session, token: string, i: number): Promise<number> {
  const res = await fetch(`${baseUrl}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: POOL_EVENT_FRAMES_ACCEPT },
    body: JSON.stringify({
      id: `bench-${i}-${Math.random().toString(36).slice(2)}`,
      promptIds: tokenizer.encode(session.prompt),
      maxTokens: settings.maxTokens,
      sampling: { temperature: session.temperature, topP: session.top_p, seed: session.seed },
      speculation: settings.speculation === 'off' ? 'off' : 'sssd',
    }),
  });
  let first = -1;
  let last = -1;
  let after = 0;
  for await (const event of readPoolEvents(res.body!, { format: poolEventFormat(res.headers.get('content-type')) })) {
    if (event.type !== 'tokens') continue;
    const now = performance.now();
    if (first < 0) first = now;
    else after += event.ids.length;
    last = now;
  }
  return last > first ? after / ((last - first) / 1000) : NaN;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)];
}

await runBenchmark(async () => {
  const settings = await readSettings(process.argv.slice(2));
  const { delayMs, sessions } = settings;
  const token = generatePoolToken();
  // The pool starts beside the edges (an edge needs its pool only to serve), on a port the proxies are pointed at first.
  const target = { host: '127.0.0.1', port: await freePort() };
  // The baseline goes through the same proxy code with no delay, so both paths
  // see the same TCP segmenting (the proxy coalesces writes within a timer tick).
  const dirs = [mkdtempSync(path.join(tmpdir(), 'sssd-delay-a-')), mkdtempSync(path.join(tmpdir(), 'sssd-delay-b-'))];
  const proxies: DelayProxy[] = [];
  const edges: RunningEdge[] = [];
  let pool: RunningPool | null = null;
  // Whatever started is stopped, also when a later start fails.
  try {
    const baselineProxy = await startDelayProxy(target, 0);
    proxies.push(baselineProxy);
    const proxy = await startDelayProxy(target, delayMs);
    proxies.push(proxy);
    const [poolStarted, ...started] = await Promise.allSettled([
      startPool({ model: sharedFile('models/stories260K/stories260K.bin'), tokenizer: sharedFile('models/stories260K/tok512.bin'), token, port: target.port }),
      startEdge({ poolUrls: [baselineProxy.url], poolToken: token, devKey: 'bench-key', persistTo: dirs[0], vars: { SSSD_DEFAULT_RPM: '100000' } }),
      startEdge({ poolUrls: [proxy.url], poolToken: token, devKey: 'bench-key', persistTo: dirs[1], vars: { SSSD_DEFAULT_RPM: '100000' } }),
    ]);
    if (poolStarted.status === 'fulfilled') pool = poolStarted.value;
    for (const s of started) if (s.status === 'fulfilled') edges.push(s.value);
    for (const s of [poolStarted, ...started]) if (s.status === 'rejected') throw s.reason;
    const [undelayed, delayed] = edges;
    // Warm both isolates (tokenizer load, health) outside the measurement.
    await one(settings, undelayed.url, sessions[0], 'warm-');
    await one(settings, delayed.url, sessions[0], 'warm-');
    const results: Record<'noDelay' | 'delayed', Sample[]> = { noDelay: [], delayed: [] };
    for (const session of sessions) {
      // Interleave so drift in machine load hits both alike.
      results.noDelay.push(await one(settings, undelayed.url, session, 'nodelay-'));
      results.delayed.push(await one(settings, delayed.url, session, 'delayed-'));
    }
    const summary = Object.fromEntries(
      Object.entries(results).map(([name, xs]) => [
        name,
        {
          requests: xs.length,
          medianTokens: median(xs.map((x) => x.tokens)),
          medianFirstTokenMs: Number(median(xs.map((x) => x.firstTokenMs)).toFixed(1)),
          medianTokensPerSAfterFirst: Number(median(xs.map((x) => x.afterFirstTokensPerS)).toFixed(1)),
          meanTokensPerSAfterFirst: Number((xs.reduce((s, x) => s + (Number.isFinite(x.afterFirstTokensPerS) ? x.afterFirstTokensPerS : 0), 0) / xs.length).toFixed(1)),
          medianAcceptanceLength: Number(median(xs.map((x) => x.meanAcceptance)).toFixed(2)),
        },
      ]),
    );
    const drop = 1 - summary.delayed.medianTokensPerSAfterFirst / summary.noDelay.medianTokensPerSAfterFirst;
    if (!settings.json) {
      console.log(`one-way delay ${delayMs} ms between edge and pool, speculation ${settings.speculation}, max_tokens ${settings.maxTokens}:`);
      console.table(summary);
      console.log(`tokens/s after the first token: ${(Math.abs(drop) * 100).toFixed(1)}% ${drop >= 0 ? 'lower' : 'higher'} with the delay (median)`);
    }
    const link: Record<'noDelay' | 'delayed', number[]> = { noDelay: [], delayed: [] };
    for (const [i, session] of sessions.entries()) {
      link.noDelay.push(await poolOnly(settings, baselineProxy.url, session, token, i));
      link.delayed.push(await poolOnly(settings, proxy.url, session, token, i));
    }
    const [linkDirect, linkDelayed] = [median(link.noDelay), median(link.delayed)];
    if (settings.json) {
      const poolStreamOnly = { noDelayTokensPerSAfterFirst: Number(linkDirect.toFixed(1)), delayedTokensPerSAfterFirst: Number(linkDelayed.toFixed(1)) };
      process.stdout.write(JSON.stringify({ delayMs, speculation: settings.speculation, maxTokens: settings.maxTokens, ...summary, dropAfterFirst: Number(drop.toFixed(4)), poolStreamOnly }, null, 2) + '\n');
    } else {
      console.log(
        `pool stream alone (no edge), median tokens/s after the first: ${linkDirect.toFixed(1)} at 0 ms, ${linkDelayed.toFixed(1)} at ${delayMs} ms (${(Math.abs(1 - linkDelayed / linkDirect) * 100).toFixed(1)}% ${linkDelayed <= linkDirect ? 'lower' : 'higher'})`,
      );
    }
  } finally {
    await Promise.all(edges.map((e) => e.stop()));
    await Promise.all(proxies.map((p) => p.close()));
    await pool?.service.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
