import type { Stats } from 'node:fs';

/** Whether two files' stats are of one file, whatever the paths to it (`./`, a symbolic or a hard link). */
export function sameFile(a: Stats | null | undefined, b: Stats | null | undefined): boolean {
  return !!a && !!b && a.dev === b.dev && a.ino === b.ino;
}
