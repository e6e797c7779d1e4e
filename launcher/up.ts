/**
 * `sssd up` / `npm start`: the whole local stack in one command. Starts the
 * pool (default model stories260K on CPU, the datastore when built) and the
 * edge under `wrangler dev`, prints where to go, and stops both on Ctrl-C.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import { nextTokenTableCorpusPositions, nextTokenTablePath } from '../gpu-pool/datastore/next-token-table-file';
import path from 'node:path';
import { CliError } from '../gpu-pool/cli/cli-error';
import { DEFAULT_DRAIN_SECONDS, poolStopGraceMs } from '../gpu-pool/cli/pool-drain';
import { SAME_SIGNAL_MS } from '../gpu-pool/cli/same-signal';
import { poolCacheDir } from '../gpu-pool/graph/graph-cache';
import { checkModelFile } from '../gpu-pool/model/load-model';
import { locateModel } from './model-locator';
import { servedModelName } from '../gpu-pool/cli/served-model-name';
import { isPortFree, ServiceExitedError, spawnService, type ServiceProcess } from './service-process';
import { SSSD_NODE_ARGS } from './sssd-entry';
import { edgeDevtoolsFromEnv, edgeVarProblem, repoRoot, sharedDirFrom, startStack, type RunningStack } from './stack';
import { EDGE_TUNING_VARS, invalidEdgeVars } from '../edge/edge-config';

export interface UpOptions {
  model?: string;
  tokenizer?: string;
  datastore?: string;
  poolPort?: number | string;
  edgePort?: number | string;
  verbose?: boolean;
  /** Flags for the pool beyond those `up` sets itself (given after `--`). */
  poolFlags?: string[];
}

function portFrom(value: number | string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  if (!/^\d+$/.test(String(value).trim()) || !Number.isInteger(port) || port < 1 || port > 65535) throw new CliError(`${name} must be a TCP port (1-65535), got "${value}".`);
  return port;
}

/**
 * The default model's datastore is built once from the development corpus
 * beside the repository (../shared/workloads), when that corpus is there, plus
 * the model's own continuations of the corpus's story openings
 * (gpu-pool/datastore/self-continuations.ts; SSSD_DATASTORE_SELF=off leaves
 * them out), with the model's next-token table beside it
 * (shared/drafting/next-token-table.ts); a second start reuses them.
 * Without the corpus (a machine outside, with the model alone) it is built
 * from the model's own stories instead (`datastore build --self-samples`,
 * gpu-pool/datastore/self-samples.ts), which drafts almost as well; with
 * SSSD_DATASTORE_SELF=off as well, the pool starts without a datastore, and
 * says so.
 */
/** Where the default model's datastore lives: the repository's .cache, or SSSD_CACHE_DIR (a checkout that is not writable). */
export function defaultDatastoreFile(withSelf: boolean, source: 'corpus' | 'samples' = 'corpus'): string {
  return path.join(poolCacheDir(), 'datastore', `stories260K${source === 'samples' ? '.samples' : withSelf ? '.self' : ''}.sssd-ds`);
}

/** The model's own stories a datastore is built from where there is no corpus (self-samples.ts; τ 5.59 / 9.64 at 8 / 32 nodes against the corpus's 5.80 / 10.18). */
export const DEFAULT_SELF_SAMPLES = 1500;

/** Builds the default datastore where it is not built yet; its file (which may not exist: no datastore). `where`: for tests. */
export async function ensureDefaultDatastore(
  files: { model: string; tokenizer: string },
  withSelf: boolean,
  log: (line: string) => void,
  where: { corpus?: string; samples?: number } = {},
): Promise<string> {
  const corpus = where.corpus ?? path.join(sharedDirFrom(), 'workloads', 'datastore-corpus.jsonl');
  const samples = where.samples ?? DEFAULT_SELF_SAMPLES;
  const hasCorpus = existsSync(corpus);
  if (!hasCorpus && !withSelf) {
    // One built from the corpus when it was there is still the corpus's: used, as with the corpus.
    const built = defaultDatastoreFile(false);
    if (!existsSync(built)) log("no datastore: no corpus beside the repository, and SSSD_DATASTORE_SELF=off leaves out the model's own stories; drafts come from each prompt and the user's cache alone");
    return built;
  }
  const file = defaultDatastoreFile(withSelf, hasCorpus ? 'corpus' : 'samples');
  if (await defaultDatastoreComplete(file, withSelf)) return file;
  log(
    !hasCorpus
      ? `building the global datastore from ${samples} of the model's own stories and its continuations of their openings (no corpus beside the repository; once; 3-4 minutes on 2 CPU cores)...`
      : withSelf
        ? `building the global datastore from ${corpus} and the model's own continuations of its openings (once; 2-3 minutes on 2 CPU cores)...`
        : `building the global datastore from ${corpus} (once)...`,
  );
  const source = hasCorpus ? ['--input', corpus] : ['--self-samples', String(samples)];
  const args = [...SSSD_NODE_ARGS, 'datastore', 'build', '--tokenizer', files.tokenizer, ...source, '--out', file];
  if (withSelf) args.push('--model', files.model);
  // Under the orphan guard: a launcher stopped or killed mid-build takes the build with it (it ran on for minutes,
  // and a restart built the same file beside it). Its progress lines are shown: minutes of one line looked hung.
  const build = spawnService('datastore', process.execPath, args, { cwd: repoRoot, env: process.env, echo: (line) => log(`  ${line}`), guard: true });
  const code = await build.exited;
  if (code !== 0) {
    // Its lines were shown as they came: the last one says why.
    throw new CliError(
      `building the datastore failed (${code}): ${build.tail().split('\n').at(-1) ?? ''}\n` +
        (withSelf
          ? 'Set SSSD_DATASTORE to a datastore of your own, or SSSD_DATASTORE_SELF=off (the corpus alone where there is one, else no datastore).'
          : 'Set SSSD_DATASTORE to a datastore of your own.'),
    );
  }
  return file;
}

/**
 * Whether the default datastore at `file` is what this version builds. One
 * from before the next-token table, or from before the table also held the
 * corpus's positions (corpus-distributions.ts), is rebuilt once to gain it.
 */
export async function defaultDatastoreComplete(file: string, withSelf: boolean): Promise<boolean> {
  if (!existsSync(file)) return false;
  if (!withSelf) return true;
  return (await nextTokenTableCorpusPositions(nextTokenTablePath(file))) !== null;
}

/** SSSD_DATASTORE_SELF: on (the default) or off; anything else is a one-line error. */
export function selfContinuationsWanted(raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === 'on') return true;
  if (raw === 'off') return false;
  throw new CliError(`SSSD_DATASTORE_SELF must be on or off, got "${raw}".`);
}

/**
 * The Worker's tuning vars set in this environment (SSSD_DEFAULT_CONCURRENCY,
 * SSSD_DEFAULT_RPM, ...: edge-config.ts), for the edge; a bad value is an
 * error here, where the Worker would only warn and use its default.
 */
export function edgeVarsFrom(env: NodeJS.ProcessEnv): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const name of EDGE_TUNING_VARS) {
    const value = env[name];
    if (value !== undefined && value !== '') vars[name] = value;
  }
  const problems = invalidEdgeVars(vars).map((p) => p.message);
  if (problems.length > 0) throw new CliError(problems.join('\n'));
  return vars;
}

/** How often, and how many times in a row, a service's /healthz may be refused before the stack is taken for broken. */
const WATCH_EVERY_MS = 3_000;
const WATCH_MISSES = 3;
/**
 * How long a service may stay silent (its /healthz timing out, the connection
 * open) before it is taken for hung. A busy one is silent, not gone: workerd
 * spent 12 s of CPU on one request's body sent a byte a chunk, and the stack
 * was stopped under everyone after 9 s. A dead one is silent too (wrangler's
 * proxy still takes connections when the runtime behind it died), so not
 * much longer.
 */
const WATCH_SILENT_MS = 20_000;

/**
 * SSSD_UP_SILENT_SECONDS: WATCH_SILENT_MS in seconds where set (whole seconds, 1 to 3,600), refused by name
 * otherwise. A test that kills workerd under the stack need not wait out the 20 s an operator's busy edge is given.
 */
export function watchSilentMsFrom(raw: string | undefined): number {
  if (raw === undefined || raw === '') return WATCH_SILENT_MS;
  const seconds = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || seconds < 1 || seconds > 3600) throw new CliError(`SSSD_UP_SILENT_SECONDS must be whole seconds from 1 to 3600, got "${raw}".`);
  return seconds * 1000;
}

/**
 * Calls `gone` once the service at `url` has refused /healthz WATCH_MISSES
 * times in a row (any status is an answer: a busy or draining pool answers
 * 503), or has not answered for WATCH_SILENT_MS.
 */
export function watchAnswers(url: string, gone: (why: string) => void, timing = { everyMs: WATCH_EVERY_MS, misses: WATCH_MISSES, silentMs: WATCH_SILENT_MS }): void {
  let misses = 0;
  let silentSince = 0;
  const timer = setInterval(() => {
    fetch(`${url}/healthz`, { signal: AbortSignal.timeout(timing.everyMs) }).then(
      async (res) => {
        await res.body?.cancel();
        misses = 0;
        silentSince = 0;
      },
      (err: unknown) => {
        const why = `${url}/healthz: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`;
        if (err instanceof Error && err.name === 'TimeoutError') {
          const now = Date.now();
          if (silentSince === 0) silentSince = now - timing.everyMs;
          if (now - silentSince < timing.silentMs) return;
        } else if (++misses < timing.misses) {
          return;
        }
        clearInterval(timer);
        gone(why);
      },
    );
  }, timing.everyMs);
  timer.unref();
}

/** The pool flags `up` sets itself, and what sets them in `up` instead. */
const FLAGS_OF_UP: Readonly<Record<string, string>> = {
  '--model': "up's --model or SSSD_MODEL",
  '--tokenizer': "up's --tokenizer or SSSD_TOKENIZER",
  '--datastore': "up's --datastore or SSSD_DATASTORE",
  '--port': "up's --pool-port or SSSD_POOL_PORT",
};

/**
 * The pool flags given after `--`, as they are; the pool checks them itself
 * (a bad one stops the stack with its words). Those `up` sets itself are
 * refused by name, rather than given twice with the later one winning.
 */
export function checkPoolFlags(flags: readonly string[]): string[] {
  // A value may follow its flag; the first word must be a flag (`sssd up 16` is a slip, not a pool flag).
  if (flags.length > 0 && !flags[0].startsWith('-')) {
    throw new CliError(`"${flags[0]}" is not a flag: sssd up takes the pool's flags after --, e.g. sssd up -- --max-active 16 (see sssd pool --help).`);
  }
  for (const flag of flags) {
    const name = flag.split('=')[0];
    const instead = FLAGS_OF_UP[name];
    if (instead) throw new CliError(`${name} after -- is set by sssd up itself; use ${instead}.`);
  }
  return [...flags];
}

/**
 * The name the pool will serve its model under (`--served-model-name` after
 * --, else SSSD_MODEL_NAME, which the pool inherits), checked here: a bad one
 * stops `up` before a download or a datastore build, not after them. Null:
 * the checkpoint's name.
 */
export function upServedModelName(poolFlags: readonly string[], env: NodeJS.ProcessEnv): string | null {
  let flag: string | undefined;
  poolFlags.forEach((word, i) => {
    if (word === '--served-model-name') flag = poolFlags[i + 1] ?? '';
    else if (word.startsWith('--served-model-name=')) flag = word.slice('--served-model-name='.length);
  });
  return servedModelName(flag, env);
}

/** How long the pool may take to stop once asked: its drain (`--drain-seconds` after --, else its default) and its wind-down. */
export function poolDrainGraceMs(poolFlags: readonly string[]): number {
  let seconds = DEFAULT_DRAIN_SECONDS;
  poolFlags.forEach((flag, i) => {
    const value = flag === '--drain-seconds' ? poolFlags[i + 1] : flag.startsWith('--drain-seconds=') ? flag.slice('--drain-seconds='.length) : undefined;
    // A bad value stops the pool at its start, with its own words.
    if (value !== undefined && Number(value) >= 0) seconds = Number(value);
  });
  return poolStopGraceMs(seconds);
}

/**
 * Whether the edge can read its local KV: a key no one holds answers 401
 * where it can, 503 `key_store_unavailable` where it cannot. Null when it
 * can (or the edge could not be asked: its own errors say more).
 */
/**
 * What `up` says of a service that exited under it: its last lines where its
 * output was hidden (the cause of death), nothing more where it was echoed as
 * it came (--verbose, the pool's --log-requests or --log-stats): the same
 * lines again, unprefixed, were only noise (review h222: ~40 request lines).
 */
export function serviceExitNote(service: Pick<ServiceProcess, 'name' | 'echoed' | 'tail'>, code: number | string): string {
  const tail = service.echoed ? '' : service.tail();
  return `${service.name} exited (${code})${tail ? `\n${tail}` : ''}`;
}

export async function localKvProblem(edgeUrl: string): Promise<string | null> {
  try {
    const probe = `sssd-kv-probe-${Math.random().toString(36).slice(2)}`;
    const res = await fetch(`${edgeUrl}/v1/models`, { headers: { authorization: `Bearer ${probe}` }, signal: AbortSignal.timeout(5000) });
    const body = (await res.json().catch(() => null)) as { error?: { code?: string } } | null;
    if (res.status !== 503 || body?.error?.code !== 'key_store_unavailable') return null;
    return `the edge cannot read its KV store (${process.env.SSSD_EDGE_STATE ?? '.wrangler/state'}): every key stored there answers 503 until it can; the dev key works. A damaged folder can be moved away (keys and users' caches stored in it are lost); --verbose shows workerd's error.`;
  } catch {
    return null;
  }
}

/**
 * Whether SSSD_MODEL_SHA256 pins other weights than the pool serves: the edge would then answer every request 503
 * "retry shortly", for good (review h158). Null where they agree, nothing is pinned, or the pool could not be asked.
 */
export async function pinnedWeightsProblem(poolUrl: string, poolToken: string, pinned: string | undefined): Promise<string | null> {
  if (!pinned || !/^[0-9a-fA-F]{64}$/.test(pinned)) return null;
  try {
    const res = await fetch(`${poolUrl}/v1/info`, { headers: { authorization: `Bearer ${poolToken}` }, signal: AbortSignal.timeout(5000) });
    const info = (await res.json()) as { model?: { name?: string; sha256?: string } };
    const served = info.model?.sha256;
    if (typeof served !== 'string' || served.toLowerCase() === pinned.toLowerCase()) return null;
    return `SSSD_MODEL_SHA256 pins weights ${pinned.slice(0, 12).toLowerCase()}, but the pool serves ${info.model?.name ?? 'a model'} with weights ${served.slice(0, 12)}: the edge answers every request 503 until they agree. Unset SSSD_MODEL_SHA256, or set it to ${served}.`;
  } catch {
    return null;
  }
}

export async function runUp(opts: UpOptions, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<void> {
  const env = process.env;
  // `npm start` runs in the package's folder whatever folder it was typed in, and says which in INIT_CWD: paths
  // are taken from there, as from `node bin/sssd.mjs up` run in that folder (they were taken from the repository).
  // Only this package's own `start`, run where npm put it: another package's start script that cd's here named its
  // paths from here.
  const ownStart = env.npm_lifecycle_event === 'start' && env.npm_package_json === path.join(repoRoot, 'package.json') && process.cwd() === repoRoot;
  if (ownStart && env.INIT_CWD && existsSync(env.INIT_CWD)) process.chdir(env.INIT_CWD);
  // Paths are given from where `up` runs, and wrangler runs in the repository (the pool ran there too): made whole
  // (a relative datastore was found here and then not by the pool; a relative cache folder had its datastore
  // rebuilt at each start).
  for (const name of ['SSSD_CACHE_DIR', 'SSSD_DATASTORE', 'SSSD_EDGE_STATE'] as const) {
    const given = env[name];
    if (given) env[name] = path.resolve(given);
    // Empty is unset, as everywhere else (SSSD_DATASTORE= started the pool with no datastore at all).
    else delete env[name];
  }
  if (opts.datastore) opts = { ...opts, datastore: path.resolve(opts.datastore) };
  // The edge's KV lives in this folder: a file there, or a folder that cannot be made, is said now and as the
  // user's mistake (exit 2), not as wrangler's EEXIST after the pool has started.
  if (env.SSSD_EDGE_STATE) {
    const state = env.SSSD_EDGE_STATE;
    try {
      mkdirSync(state, { recursive: true });
      if (!statSync(state).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(`SSSD_EDGE_STATE=${state} must be a folder the edge can keep its keys and users' caches in (${code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : (code ?? (err as Error).message)}).`);
    }
  }
  const edgeVars = edgeVarsFrom(env);
  // Checked before anything starts, as the edge's vars are.
  edgeDevtoolsFromEnv(env.SSSD_EDGE_DEVTOOLS);
  const watchTiming = { everyMs: WATCH_EVERY_MS, misses: WATCH_MISSES, silentMs: watchSilentMsFrom(env.SSSD_UP_SILENT_SECONDS) };
  const devKey = env.SSSD_DEV_API_KEY || 'sssd-dev-key';
  // Sent as `Authorization: Bearer <key>`, which the edge reads as one word of printable ASCII: any other never matched.
  if (!/^[\x21-\x7e]+$/.test(devKey)) throw new CliError('SSSD_DEV_API_KEY must be printable ASCII without spaces (clients send it as "Authorization: Bearer <key>").');
  // Before the pool loads, not after (it reaches the edge through wrangler's env file).
  const tokenProblem = env.SSSD_POOL_TOKEN ? edgeVarProblem('SSSD_POOL_TOKEN', env.SSSD_POOL_TOKEN) : null;
  if (tokenProblem) throw new CliError(`${tokenProblem}.`);
  const poolFlags = checkPoolFlags(opts.poolFlags ?? []);
  const drainGraceMs = poolDrainGraceMs(poolFlags);
  const servedName = upServedModelName(poolFlags, env);
  const poolPort = portFrom(opts.poolPort ?? env.SSSD_POOL_PORT, 8788, opts.poolPort !== undefined ? '--pool-port' : 'SSSD_POOL_PORT');
  const edgePort = portFrom(opts.edgePort ?? env.SSSD_EDGE_PORT, 8787, opts.edgePort !== undefined ? '--edge-port' : 'SSSD_EDGE_PORT');
  // Another service on our port would answer the readiness checks in our place (the pool, the edge's).
  if (poolPort === edgePort) throw new CliError(`the pool and the edge cannot share port ${poolPort}; give them two (--pool-port and --edge-port, or SSSD_POOL_PORT and SSSD_EDGE_PORT).`);
  const checkPorts = async (): Promise<void> => {
    for (const [port, name] of [[poolPort, '--pool-port or SSSD_POOL_PORT'], [edgePort, '--edge-port or SSSD_EDGE_PORT']] as const) {
      if (!(await isPortFree(port))) throw new CliError(`port ${port} is already in use; stop what runs there or choose another port with ${name}.`);
    }
  };
  // Before a download or a datastore build of minutes (a port in use was found only after them), and again after them.
  await checkPorts();
  // Interrupted before both services answer (a build of the datastore included): exit at once. The services and a
  // build stop on their own once this process is gone (the pool's IPC channel, the orphan guard), and the edge's
  // secrets file goes with the exit.
  const interruptStart = (signal: NodeJS.Signals): void => {
    log(`\n${signal} while starting; stopping...`);
    process.exit(128 + os.constants.signals[signal]);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, interruptStart);
  const stopInterrupting = (): void => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, interruptStart);
  };
  let files: Awaited<ReturnType<typeof locateModel>>;
  let datastore: string | undefined;
  try {
    files = await locateModel({
      repoRoot,
      sharedDir: sharedDirFrom(env),
      env: { ...env, ...(opts.model ? { SSSD_MODEL: opts.model } : {}), ...(opts.tokenizer ? { SSSD_TOKENIZER: opts.tokenizer } : {}) },
      log,
    });
    // A checkpoint the pool would refuse (truncated, not one) is said first, by its path: it was found only once the
    // pool loaded it, after a datastore was built for it or suggested.
    await checkModelFile(files.model);
    const withSelf = selfContinuationsWanted(env.SSSD_DATASTORE_SELF);
    let defaultDatastore: string | undefined;
    if (!opts.datastore && !env.SSSD_DATASTORE && files.origin !== 'configured') {
      defaultDatastore = await ensureDefaultDatastore(files, withSelf, log);
    }
    datastore = opts.datastore ?? env.SSSD_DATASTORE ?? (defaultDatastore && existsSync(defaultDatastore) ? defaultDatastore : undefined);
    if (datastore && !existsSync(datastore)) throw new CliError(`Datastore file ${datastore} does not exist (build one with: sssd datastore build).`);
    // Something may have taken a port during a build.
    await checkPorts();
  } catch (err) {
    stopInterrupting();
    throw err;
  }

  log(`starting pool (model ${files.model}${servedName !== null ? ` served as ${servedName}` : ''}${datastore ? `, datastore ${datastore}` : ', no datastore'}) and edge...`);
  let stack: RunningStack;
  try {
    stack = await startStack({
      model: files.model,
      tokenizer: files.tokenizer,
      datastore,
      poolPort,
      edgePort,
      poolToken: env.SSSD_POOL_TOKEN,
      devKey,
      // Local KV lives in .wrangler/state unless SSSD_EDGE_STATE points elsewhere.
      persistTo: env.SSSD_EDGE_STATE || undefined,
      vars: edgeVars,
      extraArgs: poolFlags,
      // The pool's own flags (`--speculative-config @FILE`, `--save-datastore FILE`) name files from here too.
      cwd: process.cwd(),
      poolDrainGraceMs: drainGraceMs,
      echo: opts.verbose ? log : undefined,
      // Flags that ask the pool for logs are asked for them here too: without --verbose they went nowhere.
      poolEcho: poolFlags.some((f) => /^--log-(requests|stats)(=|$)/.test(f)) ? log : undefined,
      stopNote: log,
    });
  } catch (err) {
    // A service that refused its configuration (the pool exits 2 for a bad model or flag) is a usage error here too:
    // a supervisor restarting on 1 would only meet it again.
    const refused = err instanceof ServiceExitedError && err.code === 2;
    throw new CliError(`the stack did not start: ${err instanceof Error ? err.message : String(err)}`, refused ? 2 : 1);
  } finally {
    stopInterrupting();
  }

  // From here a signal or a service ending stops the stack, the pool draining first: installed before the checks
  // below, which await the services (a ^C during them met node's default and killed `up` with no drain, no "stopped.").
  let stopping = false;
  let firstSignalAt = 0;
  let stopped!: (failure: string | null) => void;
  // A service that exits on its own is a failure: a supervisor must see a non-zero exit and restart the stack.
  const ended = new Promise<string | null>((resolve) => (stopped = resolve));
  const stop = (why: string, failed: boolean): void => {
    if (stopping) {
      // Asked again while the pool drains: cut what is left. (A service ending meanwhile is the stop itself, and a
      // signal within SAME_SIGNAL_MS of the first is that one delivered twice: `timeout` signals the process, then its group.)
      if (!failed && performance.now() - firstSignalAt >= SAME_SIGNAL_MS) {
        log(`${why} again; stopping now...`);
        void stack.stopNow();
      }
      return;
    }
    stopping = true;
    if (!failed) firstSignalAt = performance.now();
    // The headline first: `why` may go on with the dead service's last lines, which the note must not end.
    const [headline, ...tail] = why.split('\n');
    if (failed) log(`\n${headline}; stopping edge and pool...${tail.length > 0 ? `\n${tail.join('\n')}` : ''}`);
    else log(`\n${why}; the pool finishes the generations it is running (new ones are refused), then both stop, the edge once its background responses have stored their ends. ${why === 'interrupted' ? '^C' : 'The same signal'} again, a second or more from now, to stop now...`);
    void stack
      .stop()
      .then(() => stack.pool.service.exited)
      // Killed after its drain's grace: generations it still ran were cut, not a clean stop.
      .then((code) => stopped(failed ? why.split('\n')[0] : code === 'SIGKILL' ? `the pool did not stop within ${Math.round(drainGraceMs / 1000)} s of being asked to (its drain and wind-down) and was killed` : null));
  };
  process.on('SIGINT', () => stop('interrupted', false));
  process.on('SIGTERM', () => stop('terminated', false));
  // A closed terminal: stop as on ^C rather than die with the services still up.
  process.on('SIGHUP', () => stop('hung up', false));
  void stack.pool.service.exited.then((code) => stop(serviceExitNote(stack.pool.service, code), true));
  void stack.edge.service.exited.then((code) => stop(serviceExitNote(stack.edge.service, code), true));
  // wrangler outlives a workerd that crashed (or was killed for memory): the edge's port is what tells.
  watchAnswers(stack.edgeUrl, (why) => stop(`edge stopped answering (${why})`, true), watchTiming);
  watchAnswers(stack.poolUrl, (why) => stop(`pool stopped answering (${why})`, true), watchTiming);

  // Another model gets no default datastore (building one takes its own minutes): say how, since drafts are much poorer
  // without. Once the pool serves the model: a pool that refused it (a damaged folder, a bad flag) is what is said then.
  if (!datastore && files.origin === 'configured') {
    const quoted = (p: string): string => JSON.stringify(p);
    log(
      `  without a datastore, drafts come from each prompt and the user's cache alone; build one from the model's own stories with\n` +
        `  node bin/sssd.mjs datastore build --model ${quoted(files.model)} --tokenizer ${quoted(files.tokenizer)} --self-samples 1500 --out FILE, then set SSSD_DATASTORE=FILE\n` +
        '  (minutes for a small model on a CPU; the sampling and continuing run the model, so a large one takes as much longer)',
    );
  }
  // A local KV store that workerd cannot read (a damaged file under SSSD_EDGE_STATE) makes every stored key a 503
  // "retry shortly" that never clears, said nowhere but in workerd's own logs: asked once here.
  const kvProblem = await localKvProblem(stack.edgeUrl);
  const pinProblem = stopping ? null : await pinnedWeightsProblem(stack.poolUrl, stack.poolToken, env.SSSD_MODEL_SHA256);
  // Stopping already (a signal or a service ending during the checks): where to go would follow "stopping...".
  if (!stopping) {
    if (kvProblem) log(`warning: ${kvProblem}`);
    if (pinProblem) log(`warning: ${pinProblem}`);
    log('');
    log(`  demo page  ${stack.edgeUrl}/#key=${encodeURIComponent(devKey)}`);
    log(`  API        ${stack.edgeUrl}/v1  (OpenAI-compatible; Authorization: Bearer ${devKey})`);
    // The pool's own tools (bench-serve, soak) need its token; one made for this run is never shown or written out.
    const tokenNote = env.SSSD_POOL_TOKEN ? 'its /v1 routes take your SSSD_POOL_TOKEN' : 'its /v1 routes take a token made for this run; set SSSD_POOL_TOKEN before starting to point bench-serve or soak at it';
    log(`  pool       ${stack.poolUrl}  (metrics at ${stack.poolUrl}/metrics; ${tokenNote})`);
    if (stack.edge.inspectorPort !== null) log(`  devtools   chrome://inspect, target 127.0.0.1:${stack.edge.inspectorPort} (SSSD_EDGE_DEVTOOLS=1)`);
    log('');
    log('Ctrl-C stops both.');
  }

  const failure = await ended;
  log('stopped.');
  if (failure !== null) throw new CliError(`${failure}, so the stack stopped.`, 1);
}
