/**
 * Starts the local stack: a pool (`sssd pool`, Node) and the edge (`wrangler
 * dev`, local KV). Used by `sssd up` (npm start), the end-to-end tests and the
 * benches. Secrets (the pool token) reach wrangler through a generated env file
 * (mode 0600, outside git), never the command line.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ServiceExitedError, spawnService, waitForHttp, type ServiceProcess } from './service-process';
import { damagedStateNote } from './edge-state-files';
import { backgroundRunsStored } from './edge-background-runs';
import { SSSD_NODE_ARGS } from './sssd-entry';
import { POOL_NODE_FLAGS } from '../gpu-pool/cli/pool-node-flags';
import { poolStopGraceMs } from '../gpu-pool/cli/pool-drain';
import { CliError } from '../gpu-pool/cli/cli-error';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The read-only development data beside the repository (models, workloads); SSSD_SHARED_DIR overrides, taken from the current folder. */
export function sharedDirFrom(env: NodeJS.ProcessEnv = process.env): string {
  return env.SSSD_SHARED_DIR ? path.resolve(env.SSSD_SHARED_DIR) : path.resolve(repoRoot, '..', 'shared');
}
/** sharedDirFrom as the process starts (`up`, which may move to the folder `npm start` was typed in, asks again after). */
export const sharedDir = sharedDirFrom();

/** A file of the development data, said plainly where it is missing (the bench scripts ended in a raw ENOENT stack). */
export function sharedFile(relative: string): string {
  const file = path.join(sharedDir, relative);
  if (!existsSync(file)) {
    throw new CliError(`development data not found: ${file} (the benchmarks read the team's data beside the repository, ../shared, or where SSSD_SHARED_DIR names)`);
  }
  return file;
}

export interface PoolOptions {
  model: string;
  tokenizer: string;
  datastore?: string;
  /** 0 = any free port. */
  port?: number;
  token: string;
  extraArgs?: string[];
  /** Where the pool runs, and so where relative paths among `extraArgs` are found (default: the repository). */
  cwd?: string;
  echo?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface RunningPool {
  url: string;
  service: ServiceProcess;
}

/**
 * Starts a service on a free port of its own choosing, again on another one if
 * the port was taken between freePort() and the service binding it (another
 * process's listener or outgoing connection; wrangler takes seconds to bind).
 * A port the caller named is tried once; the others (wrangler's inspector
 * port) are picked anew when taken.
 */
export async function onFreePort<T>(named: number | undefined, start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(named || (await freePort()));
    } catch (err) {
      const message = (err as Error).message;
      if (!/EADDRINUSE|Address already in use/.test(message) || attempt === 3) throw err;
      // A named port is tried once; one the service picked itself (wrangler's inspector) is picked anew.
      if (named && new RegExp(`[:(]${named}\\b`).test(message)) throw err;
    }
  }
}

export function startPool(opts: PoolOptions): Promise<RunningPool> {
  return onFreePort(opts.port, (port) => startPoolOn(port, opts));
}

async function startPoolOn(port: number, opts: PoolOptions): Promise<RunningPool> {
  // The pool's node flags given here, so sssd runs it without a relaunch (one process to stop).
  const args = [...POOL_NODE_FLAGS, ...SSSD_NODE_ARGS, 'pool', '--model', opts.model, '--tokenizer', opts.tokenizer, '--port', String(port)];
  if (opts.datastore) args.push('--datastore', opts.datastore);
  args.push(...(opts.extraArgs ?? []));
  const service = spawnService('pool', process.execPath, args, {
    cwd: opts.cwd ?? repoRoot,
    env: { ...process.env, SSSD_POOL_TOKEN: opts.token },
    echo: opts.echo,
    // The pool drains and exits if this process is killed outright (pool-command.ts, watchLauncher).
    ipc: true,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/healthz`, service, opts.startTimeoutMs ?? 120_000);
  } catch (err) {
    await service.stop();
    throw err;
  }
  return { url, service };
}

export interface EdgeOptions {
  poolUrls: string[];
  poolToken: string;
  /** The plaintext dev key; only its SHA-256 reaches the Worker. */
  devKey: string;
  port?: number;
  /** wrangler --persist-to (local KV); default: .wrangler/state. */
  persistTo?: string;
  /** More Worker vars/secrets (SSSD_API_KEYS, SSSD_BENCH_ROUTES, limits...). */
  vars?: Record<string, string>;
  /** Another wrangler config than the repository's wrangler.toml (a test's, for a deployment's mistakes); its `main` an absolute path. */
  wranglerConfig?: string;
  echo?: (line: string) => void;
  startTimeoutMs?: number;
  /**
   * Run wrangler's DevTools proxy (default: SSSD_EDGE_DEVTOOLS=1). Off, as
   * by default: it enables the runtime's network inspection and keeps every
   * event, each subrequest's whole body included, until a DevTools client
   * attaches, so under load it grows without bound (~0.9 GB after a
   * 3-minute soak) and the edge served half the requests it serves without it.
   */
  devtools?: boolean;
  /** Aborted: the start is given up (wrangler stopped, the promise rejects); a stack whose pool failed to start. */
  signal?: AbortSignal;
}

export interface RunningEdge {
  url: string;
  service: ServiceProcess;
  /** Where DevTools connect (chrome://inspect), or null when the DevTools proxy is off. */
  inspectorPort: number | null;
  stop(): Promise<void>;
}

/**
 * wrangler dev (4.80) has no switch for its DevTools proxy but leaves it out
 * inside a VS Code debug terminal, which it knows by VSCODE_INSPECTOR_OPTIONS;
 * miniflare then only looks for VS Code's bootloader in NODE_OPTIONS, which
 * is not there, so the variable does nothing else.
 */
export function edgeProcessEnv(env: NodeJS.ProcessEnv, devtools: boolean): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, WRANGLER_SEND_METRICS: 'false', CI: '1', NO_COLOR: '1' };
  if (devtools) delete out.VSCODE_INSPECTOR_OPTIONS;
  else out.VSCODE_INSPECTOR_OPTIONS = out.VSCODE_INSPECTOR_OPTIONS || '{}';
  return out;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Why `value` cannot go to the edge through wrangler's env file, or null when it can. */
export function edgeVarProblem(name: string, value: string): string | null {
  return /['\n\r\\]/.test(value) ? `${name} cannot hold quotes, backslashes or newlines (wrangler reads it from a dotenv file)` : null;
}

/**
 * dotenv syntax: single quotes keep the value literal (JSON included), but
 * for `$`: wrangler expands `$NAME` even there (a pool token `abc$HOMEx`
 * reached the edge as `abc`, and the pool refused every request), and `\$`
 * is its literal dollar.
 */
function envFileLine(name: string, value: string): string {
  const problem = edgeVarProblem(name, value);
  if (problem) throw new Error(problem);
  return `${name}='${value.replace(/\$/g, () => '\\$')}'`;
}

export function startEdge(opts: EdgeOptions): Promise<RunningEdge> {
  return onFreePort(opts.port, (port) => startEdgeOn(port, opts));
}

/** Folders holding an edge's secrets (the pool token) while its edge runs; removed at the latest when this process exits (killed outright: by the edge's orphan guard). */
const secretDirs = new Set<string>();
let removeOnExit = false;

function secretsFolder(): string {
  if (!removeOnExit) {
    removeOnExit = true;
    // Also where the launcher exits mid-start (an interrupt before the services answer: launcher/up.ts).
    process.on('exit', () => {
      for (const dir of secretDirs) rmSync(dir, { recursive: true, force: true });
    });
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'sssd-edge-'));
  secretDirs.add(dir);
  return dir;
}

async function startEdgeOn(port: number, opts: EdgeOptions): Promise<RunningEdge> {
  const inspectorPort = await freePort();
  const secretsDir = secretsFolder();
  const envFile = path.join(secretsDir, 'edge.env');
  const vars: Record<string, string> = {
    SSSD_POOL_URLS: opts.poolUrls.join(','),
    SSSD_POOL_TOKEN: opts.poolToken,
    SSSD_DEV_KEY_SHA256: sha256Hex(opts.devKey),
    ...opts.vars,
  };
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => envFileLine(k, v)).join('\n') + '\n');
  chmodSync(envFile, 0o600);
  const args = [
    path.join(repoRoot, 'node_modules/wrangler/bin/wrangler.js'),
    'dev',
    '--config', opts.wranglerConfig ?? path.join(repoRoot, 'wrangler.toml'),
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--inspector-port', String(inspectorPort),
    '--env-file', envFile,
    '--show-interactive-dev-session=false',
    // info, not warn: the Worker's request lines (console.info, edge/request-log.ts) show with --verbose, and in a service's tail.
    '--log-level', 'info',
  ];
  if (opts.persistTo) {
    mkdirSync(opts.persistTo, { recursive: true });
    args.push('--persist-to', opts.persistTo);
  }
  const devtools = opts.devtools ?? edgeDevtoolsFromEnv(process.env.SSSD_EDGE_DEVTOOLS);
  const service = spawnService('edge', process.execPath, args, {
    cwd: repoRoot,
    // The guard removes the secrets folder if this process is killed outright (its exit handler does not run then).
    env: { ...edgeProcessEnv(process.env, devtools), SSSD_GUARD_REMOVES: secretsDir },
    echo: opts.echo,
    // wrangler and workerd stop if this process is killed outright (launcher/orphan-guard.mjs).
    guard: true,
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    await service.stop();
    rmSync(secretsDir, { recursive: true, force: true });
    secretDirs.delete(secretsDir);
  };
  try {
    await waitForHttp(`${url}/healthz`, service, opts.startTimeoutMs ?? 120_000, opts.signal);
  } catch (err) {
    await stop();
    // workerd's own words name no file when a state file is damaged.
    const note = err instanceof ServiceExitedError ? damagedStateNote(path.resolve(repoRoot, opts.persistTo ?? path.join('.wrangler', 'state'))) : '';
    throw note && err instanceof ServiceExitedError ? new ServiceExitedError(`${err.message}${note}`, err.code) : err;
  }
  return { url, service, inspectorPort: devtools ? inspectorPort : null, stop };
}

export interface StackOptions extends Omit<PoolOptions, 'port' | 'token'>, Omit<EdgeOptions, 'poolUrls' | 'poolToken' | 'port'> {
  /** How long stop() lets the pool drain and wind down before it is killed (default: poolStopGraceMs of its default drain). */
  poolDrainGraceMs?: number;
  poolPort?: number;
  edgePort?: number;
  poolToken?: string;
  /** The pool's output alone, where `echo` (both services') is not given. */
  poolEcho?: (line: string) => void;
  /** What stop() has to say (background responses it could not wait for). */
  stopNote?: (line: string) => void;
}

export interface RunningStack {
  edgeUrl: string;
  poolUrl: string;
  poolToken: string;
  devKey: string;
  pool: RunningPool;
  edge: RunningEdge;
  /**
   * Stops the pool first, as it drains (its running generations finish,
   * new ones are refused), then the edge, which carries their streams to
   * the end: stopped together, the streams through the edge were cut. The
   * edge stops once its background responses have stored their ends (a
   * few seconds at most: backgroundRunsStored).
   */
  stop(): Promise<void>;
  /** Stops both at once, cancelling what the pool's drain still waits for (a second ^C). */
  stopNow(): Promise<void>;
}

/** SSSD_EDGE_DEVTOOLS: 1 or true runs wrangler's DevTools proxy; unset, empty, 0 or false not; anything else is a one-line error, as with the other switches. */
export function edgeDevtoolsFromEnv(raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new CliError(`SSSD_EDGE_DEVTOOLS must be 0, 1, true or false, got "${raw}".`);
}

export function generatePoolToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The pool and the edge, started at once: the edge needs the pool only to
 * serve, not to start, and one after the other took the sum of their starts
 * (~12 s and ~20 s here; review h164). A pool that fails to start stops the
 * edge's start at once, and its error is the one thrown.
 */
async function startBoth(opts: StackOptions, poolToken: string): Promise<{ pool: RunningPool; edge: RunningEdge }> {
  const poolPort = opts.poolPort || (await freePort());
  const giveUp = new AbortController();
  const edgeStarting = startEdge({ ...opts, port: opts.edgePort, poolUrls: [`http://127.0.0.1:${poolPort}`], poolToken, signal: giveUp.signal });
  // Its rejection is read below; unread meanwhile, it would be an unhandled one.
  edgeStarting.catch(() => undefined);
  let pool: RunningPool;
  try {
    pool = await startPool({ ...opts, port: poolPort, token: poolToken, echo: opts.echo ?? opts.poolEcho });
  } catch (err) {
    giveUp.abort();
    const edge = await edgeStarting.catch(() => null);
    await edge?.stop();
    // The port picked here was taken before the pool bound it: started again one after the other, on ports picked anew.
    if (!opts.poolPort && /EADDRINUSE|Address already in use/.test((err as Error).message)) return startInTurn(opts, poolToken);
    throw err;
  }
  return withEdge(pool, edgeStarting);
}

async function startInTurn(opts: StackOptions, poolToken: string): Promise<{ pool: RunningPool; edge: RunningEdge }> {
  const pool = await startPool({ ...opts, port: opts.poolPort, token: poolToken, echo: opts.echo ?? opts.poolEcho });
  return withEdge(pool, startEdge({ ...opts, port: opts.edgePort, poolUrls: [pool.url], poolToken }));
}

/** The started pool with its edge once that answers; an edge that fails stops the pool before its error goes on (it ran on alone). */
async function withEdge(pool: RunningPool, edgeStarting: Promise<RunningEdge>): Promise<{ pool: RunningPool; edge: RunningEdge }> {
  try {
    return { pool, edge: await edgeStarting };
  } catch (err) {
    await pool.service.stop();
    throw err;
  }
}

export async function startStack(opts: StackOptions): Promise<RunningStack> {
  const poolToken = opts.poolToken || generatePoolToken();
  const { pool, edge } = await startBoth(opts, poolToken);
  const stoppingNow = new AbortController();
  return {
    edgeUrl: edge.url,
    poolUrl: pool.url,
    poolToken,
    devKey: opts.devKey,
    pool,
    edge,
    async stop() {
      await pool.service.stop(opts.poolDrainGraceMs ?? poolStopGraceMs());
      // Its background responses store their ends (KV's second after their queued record) before it goes.
      const left = await backgroundRunsStored(edge.url, stoppingNow.signal);
      if (left > 0) opts.stopNote?.(`stopping the edge with ${left} background response(s) whose end is not stored yet: they will read failed (the edge that ran it went away)`);
      await edge.stop();
    },
    async stopNow() {
      stoppingNow.abort();
      // A pool stopping already takes a second SIGTERM as "cancel what is left".
      pool.service.signal('SIGTERM');
      await Promise.all([edge.stop(), pool.service.stop()]);
    },
  };
}
