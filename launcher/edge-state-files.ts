/**
 * The edge's local state (`wrangler dev --persist-to`, default .wrangler/state)
 * is a tree of SQLite files. One that is damaged (cut short, overwritten) makes
 * workerd fail at its start with wrangler's "The Workers runtime failed to
 * start", which names no file: this finds the ones to name.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');
// The state is v3/<kind>/<object>/<file>.sqlite: a few levels; a bound keeps a wrong --persist-to from walking a disk.
const MAX_DEPTH = 5;

/**
 * Non-empty `*.sqlite` files under `dir` that do not start with SQLite's header
 * and have no write-ahead log beside to restore it from (SQLite reads the first
 * page from the log where it holds one: such a file opens; an empty one is made anew).
 */
export function damagedStateFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (at: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const file = path.join(at, entry.name);
      if (entry.isDirectory() && depth < MAX_DEPTH) walk(file, depth + 1);
      else if (entry.isFile() && entry.name.endsWith('.sqlite') && !startsLikeSqlite(file) && !hasLog(file)) found.push(file);
    }
  };
  walk(dir, 0);
  return found.sort();
}

function hasLog(file: string): boolean {
  try {
    return statSync(`${file}-wal`).size > 0;
  } catch {
    return false;
  }
}

function startsLikeSqlite(file: string): boolean {
  let fd: number | undefined;
  try {
    if (statSync(file).size === 0) return true;
    fd = openSync(file, 'r');
    const head = Buffer.alloc(SQLITE_HEADER.length);
    const read = readSync(fd, head, 0, head.length, 0);
    return read === head.length && head.equals(SQLITE_HEADER);
  } catch {
    // Unreadable is workerd's to say (permissions): not called damaged here.
    return true;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What to add to the edge's failure to start when its state holds damaged files; empty when it holds none. */
export function damagedStateNote(dir: string): string {
  const files = damagedStateFiles(dir);
  if (files.length === 0) return '';
  return `\nThe edge's local state in ${dir} holds ${files.length === 1 ? 'a file' : 'files'} that SQLite cannot open (damaged?): ${files.join(', ')}. Move ${files.length === 1 ? 'it' : 'them'} (with any -wal and -shm beside) away and start again: the keys and users' caches stored there are lost; workerd does not start while ${files.length === 1 ? 'it is' : 'they are'} there.`;
}
