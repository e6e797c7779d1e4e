/**
 * Whether a process still runs on this host, as far as a file left behind
 * can tell (a lock's owner, a temporary file's writer). A pid alone may
 * have been handed to another process since (a container restarted numbers
 * its processes from the same start), so where Linux says when a process
 * started, that is compared too.
 */
import { readFileSync } from 'node:fs';

/** When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22); null where that cannot be read. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** Whether process `pid` runs (one of another user's counts), and, where `startTicks` is given and can be read, is the one that started then. */
export function processRuns(pid: number, startTicks: number | null = null): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (startTicks === null) return true;
  const now = processStartTicks(pid);
  return now === null || now === startTicks;
}
