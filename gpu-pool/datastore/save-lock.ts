/**
 * One pool at a time saves to a file (`--save-datastore FILE`): each save
 * writes the whole datastore as that pool holds it, so two pools saving to
 * one file kept only the last one's contributed outputs. The lock is
 * `FILE.lock`: the owner's pid, its start time and its host, refreshed
 * (touched) every minute while it runs. A lock is another pool's while it
 * is fresh and, on this host, its process still runs; one left by a pool
 * killed outright is taken over: at once on this host (its process gone, or
 * its pid now another process's, this one's included, as in a restarted
 * container), after three minutes without a refresh from another host.
 */
import { unlinkSync } from 'node:fs';
import { readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { CliError } from '../cli/cli-error';
import { processRuns, processStartTicks } from './process-runs';

export interface SaveLock {
  /** Lets the file go (after the pool's last save). */
  release(): Promise<void>;
}

/** How often the owner touches its lock. */
const REFRESH_MS = 60_000;
/** A lock not touched for this long is left over, whoever wrote it. */
export const STALE_LOCK_MS = 3 * REFRESH_MS;

interface LockOwner {
  pid?: unknown;
  host?: unknown;
  startTicks?: unknown;
}

export function saveLockPath(file: string): string {
  return `${file}.lock`;
}

export async function acquireSaveLock(file: string): Promise<SaveLock> {
  const lockFile = saveLockPath(file);
  const mine = JSON.stringify({ pid: process.pid, host: hostname(), startTicks: processStartTicks(process.pid) });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockFile, mine, { flag: 'wx' });
      return held(lockFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliError(`--save-datastore: cannot create its lock ${lockFile}: ${(err as Error).message}`);
    }
    const refusal = await ownerRefusal(file, lockFile);
    if (refusal !== null) throw new CliError(refusal);
    // Left over: taken over.
    await unlink(lockFile).catch(() => undefined);
  }
  throw new CliError(`--save-datastore: cannot take the lock ${lockFile}: another pool took it at the same moment`);
}

/** Why the lock there is another live pool's (the refusal's words), or null where it is left over. */
async function ownerRefusal(file: string, lockFile: string): Promise<string | null> {
  const touched = await stat(lockFile).then(
    (st) => st.mtimeMs,
    () => 0,
  );
  const ageMs = Date.now() - touched;
  if (ageMs > STALE_LOCK_MS) return null;
  const owner = await readFile(lockFile, 'utf8')
    .then((text) => JSON.parse(text) as LockOwner)
    .catch((): LockOwner => ({}));
  const pid = typeof owner.pid === 'number' ? owner.pid : null;
  const startTicks = typeof owner.startTicks === 'number' ? owner.startTicks : null;
  const why = "two pools saving to one file keep only one's outputs";
  if (typeof owner.host === 'string' && owner.host !== hostname()) {
    return `--save-datastore: ${file} is saved to by a pool on ${owner.host} (pid ${pid}, ${lockFile}, refreshed ${Math.round(ageMs / 1000)} s ago); ${why}. Give this pool another file; a lock not refreshed for ${STALE_LOCK_MS / 1000} s is taken over.`;
  }
  if (pid === null || pid === process.pid || !processRuns(pid, startTicks)) return null;
  return `--save-datastore: another pool (pid ${pid}) saves to ${file}; ${why}. Give this pool another file, or start it once that one has stopped (a rolling restart: after the old pool's last save).`;
}

function held(lockFile: string): SaveLock {
  // Fresh while this process runs, so that a pool on another host sharing the folder sees it live.
  const refresh = setInterval(() => {
    const now = new Date();
    void utimes(lockFile, now, now).catch(() => undefined);
  }, REFRESH_MS);
  refresh.unref();
  // A start that fails later, or an exit without the last save, lets it go too.
  const onExit = (): void => {
    try {
      unlinkSync(lockFile);
    } catch {
      // Gone already.
    }
  };
  process.once('exit', onExit);
  return {
    release: async () => {
      clearInterval(refresh);
      process.off('exit', onExit);
      await unlink(lockFile).catch(() => undefined);
    },
  };
}
