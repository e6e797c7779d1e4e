/**
 * Starts the real pool (`node bin/sssd.mjs pool`, compiled: test/support/compiled-cli.ts) on a free port with
 * stories260K, and talks to it: NDJSON generation streams, JSON routes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { PoolEvent } from '../../../shared/protocol';
import { models, repoRoot } from '../../support/shared-data';
import { POOL_NODE_FLAGS } from '../../../gpu-pool/cli/pool-node-flags';
import { sssdNodeArgs } from '../../support/compiled-cli';

export interface PoolProcess {
  url: string;
  token: string;
  stderr: () => string;
  stop(): Promise<void>;
  /** Sends a signal to the pool process. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
}

export async function startPool(
  extraArgs: string[] = [],
  token = 'test-token-' + Math.random().toString(36).slice(2),
  env: Record<string, string> = {},
): Promise<PoolProcess> {
  const args = [
    // As the launcher does: the pool's node flags here, so it runs without a relaunch.
    ...POOL_NODE_FLAGS,
    // bin/sssd.mjs as compiled once for the run: a pool's start without tsx's ~1 s of CPU (the suites start some forty).
    ...sssdNodeArgs(),
    'pool',
    '--model',
    models.stories260K.checkpoint,
    '--tokenizer',
    models.stories260K.tokenizer,
    '--port',
    '0',
    ...extraArgs,
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { ...process.env, ...env, SSSD_POOL_TOKEN: token },
    // With a channel the pool stops if the test process dies before stopping it (pool-command.ts, watchLauncher).
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.channel?.unref();
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await waitForListening(child, () => err);
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return {
    url,
    token,
    stderr: () => err,
    kill: (signal) => void child.kill(signal),
    exited,
    stop: () =>
      new Promise<void>((resolve) => {
        // Exited, or killed by a signal (exitCode stays null then).
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

/** The URL a starting pool prints (`pool listening on …`); rejects if it exits first or takes over 90 s. */
export function waitForListening(child: ChildProcess, stderr: () => string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`pool did not start in 90 s:\n${stderr()}`)), 90_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /pool listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pool exited with ${code}:\n${stderr()}`));
    });
  });
}

export interface GenerateBody {
  id: string;
  promptIds: number[];
  maxTokens: number;
  sampling?: { temperature?: number; topP?: number; topK?: number; seed?: number };
  speculation?: 'sssd' | 'pld' | 'context' | 'off';
  useDatastore?: boolean;
  trie?: string;
  cacheSalt?: string;
  tenant?: string;
  contributeToDatastore?: boolean;
  predictionIds?: number[];
  resumedOutputTokens?: number;
  ignoreEos?: boolean;
}

export interface GenerationOutcome {
  status: number;
  events: PoolEvent[];
  ids: number[];
  done: Extract<PoolEvent, { type: 'done' }> | undefined;
}

export async function generate(pool: PoolProcess, body: GenerateBody, signal?: AbortSignal): Promise<GenerationOutcome> {
  const res = await fetch(`${pool.url}/v1/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${pool.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  const events: PoolEvent[] = [];
  if (res.status !== 200) {
    events.push((await res.json()) as PoolEvent);
    return { status: res.status, events, ids: [], done: undefined };
  }
  const text = await res.text();
  for (const line of text.split('\n')) if (line) events.push(JSON.parse(line) as PoolEvent);
  const ids = events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
  const done = events.find((e): e is Extract<PoolEvent, { type: 'done' }> => e.type === 'done');
  return { status: res.status, events, ids, done };
}

/** Reads a generation stream event by event. */
export async function* streamEvents(res: Response): AsyncGenerator<PoolEvent> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line) as PoolEvent;
    }
  }
}

export async function getJson<T>(pool: PoolProcess, route: string, auth = true): Promise<{ status: number; body: T }> {
  const res = await fetch(`${pool.url}${route}`, { headers: auth ? { authorization: `Bearer ${pool.token}` } : {} });
  return { status: res.status, body: (await res.json()) as T };
}

/** A series' value in a pool's /metrics: `name` with `labels` (`a="x",b="y"`) among its labels, whatever others it carries (the pool's model_name); 0 when absent. */
export async function metricValue(pool: Pick<PoolProcess, 'url'>, name: string, labels = ''): Promise<number> {
  return seriesValue(await (await fetch(`${pool.url}/metrics`)).text(), name, labels);
}

/** metricValue on a /metrics text already read. */
export function seriesValue(text: string, name: string, labels = ''): number {
  // Label pairs as written, quoted values whole (a value may hold ',' or '}').
  const pairs = (l: string): string[] => [...l.matchAll(/[a-zA-Z_]+="(?:[^"\\]|\\.)*"/g)].map((p) => p[0]);
  const wanted = pairs(labels);
  for (const line of text.split('\n')) {
    const m = /^([^\s{]+)(?:\{((?:[a-zA-Z_]+="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const has = pairs(m[2] ?? '');
    if (wanted.every((l) => has.includes(l))) return Number(m[3]);
  }
  return 0;
}

/**
 * Generate requests sent back to back on one raw connection, as HTTP/1.1
 * lets a client pipeline them, and all that comes back, as text.
 */
export async function pipelinedGenerates(pool: Pick<PoolProcess, 'url' | 'token'>, bodies: object[]): Promise<{ received: () => string; close: () => void }> {
  const { connect } = await import('node:net');
  const url = new URL(pool.url);
  const raw = (body: object): string => {
    const text = JSON.stringify(body);
    return `POST /v1/generate HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${pool.token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
  };
  const socket = connect(Number(url.port), url.hostname);
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('utf8')));
  socket.write(bodies.map(raw).join(''));
  return { received: () => received, close: () => socket.destroy() };
}
