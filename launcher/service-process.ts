/**
 * A child service (pool or wrangler): its own process group so stopping it
 * also stops what it spawned (wrangler → workerd), its output kept (last lines)
 * for error messages and optionally echoed with a prefix.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { listenOnce } from '../gpu-pool/server/listen-once';

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | string>;
  /** Last lines of stdout + stderr. */
  tail(): string;
  /** Whether its output is echoed as it comes (SpawnOptions.echo): its tail was seen already. */
  readonly echoed: boolean;
  stop(graceMs?: number): Promise<void>;
  /** Sends `signal` to the process group (a pool's second SIGTERM cancels what its drain still waits for). */
  signal(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Echo output lines as `[name] line`. */
  echo?: (line: string) => void;
  /**
   * Give the child an IPC channel. Unused for messages: a child that watches
   * it (the pool does) stops when it closes, which it does however this
   * process dies, SIGKILL included; the child's own process group would
   * otherwise outlive us.
   */
  ipc?: boolean;
  /**
   * Run the command under launcher/orphan-guard.mjs, which ends it when this
   * process dies: for children that do not watch a channel themselves (wrangler).
   */
  guard?: boolean;
}

const ORPHAN_GUARD = fileURLToPath(new URL('./orphan-guard.mjs', import.meta.url));

export function spawnService(name: string, command: string, args: string[], opts: SpawnOptions): ServiceProcess {
  const [file, argv] = opts.guard ? [process.execPath, [ORPHAN_GUARD, command, ...args]] : [command, args];
  const ipc = opts.ipc === true || opts.guard === true;
  const child = spawn(file, argv, { cwd: opts.cwd, env: opts.env, stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'], detached: true });
  // The channel alone must not keep this process running.
  child.channel?.unref();
  const lines: string[] = [];
  const onData = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split(/\r?\n/)) {
      if (line.trim().length === 0) continue;
      lines.push(line);
      if (lines.length > 200) lines.shift();
      opts.echo?.(`[${name}] ${line}`);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.on('error', (err) => {
      lines.push(String(err));
      resolve('spawn-error');
    });
  });
  let stopping: Promise<void> | null = null;
  const signalGroup = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  return {
    name,
    child,
    exited,
    tail: () => lines.slice(-40).join('\n'),
    echoed: opts.echo !== undefined,
    signal: signalGroup,
    stop(graceMs = 5000) {
      if (stopping) return stopping;
      stopping = (async () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          signalGroup('SIGTERM'); // grandchildren may outlive the group leader
          return;
        }
        signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
        signalGroup('SIGKILL');
      })();
      return stopping;
    },
  };
}

/**
 * The first port of the kernel's ephemeral range: outgoing connections take
 * their local ports from there, so a port picked below it cannot be taken by
 * one of them between freePort() and the service binding it.
 */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 1024 ? first : 32768;
  } catch {
    return 32768; // not Linux: the IANA range starts at 49152, the Linux default at 32768
  }
}

const LOWEST_PICKED_PORT = 10_000;

/**
 * The Fetch standard's "bad ports" (fetch.spec.whatwg.org, "port blocking") at or above LOWEST_PICKED_PORT: fetch
 * (Node's and the browsers') refuses them, so a service there could not be reached by the edge's fetch nor by
 * DevTools (10080 came up once in a CI run: "fetch failed: bad port").
 */
const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([10080]);

/**
 * A TCP port that was free a moment ago on 127.0.0.1, picked at random below
 * the ephemeral range where one is left (services take seconds to bind it).
 */
export async function freePort(): Promise<number> {
  const top = ephemeralStart();
  if (top - LOWEST_PICKED_PORT >= 1000) {
    for (let attempt = 0; attempt < 32; attempt++) {
      const port = LOWEST_PICKED_PORT + Math.floor(Math.random() * (top - LOWEST_PICKED_PORT));
      if (FETCH_BAD_PORTS.has(port)) continue;
      try {
        return await listenOnce(port);
      } catch {
        // taken: another
      }
    }
  }
  return listenOnce(0);
}

/** Whether nothing listens on 127.0.0.1:`port` right now. */
export function isPortFree(port: number): Promise<boolean> {
  return listenOnce(port).then(
    () => true,
    () => false,
  );
}

/** A service that ended before it answered; `code` is its exit code (or signal): 2 is a service refusing its configuration. */
export class ServiceExitedError extends Error {
  constructor(
    message: string,
    readonly code: number | string,
  ) {
    super(message);
    this.name = 'ServiceExitedError';
  }
}

/** Polls `url` until it answers 2xx; fails early, with the service's output, if the service exits. */
export async function waitForHttp(url: string, service: ServiceProcess, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | string | null = null;
  void service.exited.then((code) => (exitCode = code));
  for (;;) {
    if (signal?.aborted) throw new Error(`${service.name}'s start was given up`);
    if (exitCode !== null) throw new ServiceExitedError(`${service.name} exited before it answered at ${url}:\n${service.tail()}`, exitCode);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      if (res.ok) return;
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error(`${service.name} did not answer at ${url} within ${timeoutMs} ms:\n${service.tail()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
