/**
 * One pool at a time saves to a file (`--save-datastore FILE`): each save
 * writes the whole datastore as that pool holds it, so two pools saving to
 * one file kept only the last one's contributed outputs. The lock is
 * `FILE.lock`, holding the owner's pid and host; a lock whose process no
 * longer runs on this host (a pool killed outright) is taken over.
 */
import { unlinkSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { CliError } from '../cli/cli-error';
import { processRuns } from './sequential-file';

export interface SaveLock {
  /** Lets the file go (after the pool's last save). */
  release(): Promise<void>;
}

export function saveLockPath(file: string): string {
  return `${file}.lock`;
}

export async function acquireSaveLock(file: string): Promise<SaveLock> {
  const lockFile = saveLockPath(file);
  const mine = JSON.stringify({ pid: process.pid, host: hostname() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockFile, mine, { flag: 'wx' });
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
          process.off('exit', onExit);
          await unlink(lockFile).catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliError(`--save-datastore: cannot create its lock ${lockFile}: ${(err as Error).message}`);
    }
    const owner = await readFile(lockFile, 'utf8')
      .then((text) => JSON.parse(text) as { pid?: unknown; host?: unknown })
      .catch(() => null);
    const pid = typeof owner?.pid === 'number' ? owner.pid : null;
    if (owner?.host !== undefined && owner.host !== hostname()) {
      throw new CliError(
        `--save-datastore: ${file} is saved to by a pool on ${String(owner.host)} (pid ${pid}, ${lockFile}); two pools saving to one file keep only one's outputs. Give this pool another file, or remove the lock once that pool is gone.`,
      );
    }
    if (pid !== null && processRuns(pid)) {
      throw new CliError(
        `--save-datastore: another pool (pid ${pid}) saves to ${file}; two pools saving to one file keep only one's outputs. Give this pool another file, or start it once that one has stopped (a rolling restart: after the old pool's last save).`,
      );
    }
    // Left by a pool that no longer runs (or unreadable): taken over.
    await unlink(lockFile).catch(() => undefined);
  }
  throw new CliError(`--save-datastore: cannot take the lock ${lockFile}: another pool took it at the same moment`);
}
