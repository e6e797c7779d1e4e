/**
 * Keeps what requests taught the global datastore (`contributeToDatastore`)
 * across restarts: `sssd pool --save-datastore FILE` writes the whole
 * datastore (the loaded one plus every contributed output) to FILE when the
 * pool stops, and every `--save-datastore-seconds` while contributions keep
 * arriving. The next start loads it with `--datastore FILE`. llama.cpp's
 * server never saves its dynamic n-gram cache (its issue #6828); ours is one
 * file of the same format `sssd datastore build` writes.
 *
 * A save indexes the queued outputs first (the background rebuild), then
 * writes atomically (a temporary file renamed over FILE), so a crash mid-save
 * leaves the previous file whole. Saving the 2M-token default datastore takes
 * ~20-35 ms and holds the event loop ~6 ms at most (the checksum). A failed
 * save is reported and retried at the next interval; it never stops the pool.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Datastore } from './datastore';
import { nextTokenTablePath } from './next-token-table-file';
import { copyFileAtomically } from './sequential-file';

export interface DatastoreSaverOptions {
  /** Save this often while contributions arrive (ms; 0 = only at stop). */
  intervalMs: number;
  /**
   * The next-token table the pool loaded, if any: copied beside FILE
   * (FILE.next-tokens) when none is there, so `--datastore FILE` finds it.
   */
  nextTokensFile?: string | null;
  log?: (line: string) => void;
  /** Told of every save's outcome (metrics). */
  onSaved?: (result: 'ok' | 'error', bytes: number) => void;
}

export class DatastoreSaver {
  /** Contributions since the last save began. */
  private unsaved = 0;
  private saving: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;

  constructor(
    private readonly datastore: Datastore,
    readonly file: string,
    private readonly options: DatastoreSaverOptions,
  ) {
    if (options.intervalMs > 0) {
      this.timer = setInterval(() => void this.saveIfChanged(), options.intervalMs);
      this.timer.unref();
    }
  }

  /** Counts one contributed sequence (the pool appends it to the datastore itself). */
  noteContribution(): void {
    this.unsaved++;
  }

  /** Contributions not in the file yet. */
  get pending(): number {
    return this.unsaved;
  }

  /** Saves if anything was contributed since the last save (and none is running). */
  saveIfChanged(): Promise<void> {
    if (this.unsaved === 0 || this.saving) return this.saving ?? Promise.resolve();
    return this.save();
  }

  /** Saves now, after any save already running. */
  async save(): Promise<void> {
    while (this.saving) await this.saving;
    const run = this.write().finally(() => {
      this.saving = null;
    });
    this.saving = run;
    return run;
  }

  /** Contributed outputs not in the file (after stop(): the last save failed). */
  get unsavedOutputs(): number {
    return this.unsaved;
  }

  /**
   * Stops the timer and saves what is left (the pool's last word on shutdown); and where FILE is not there yet, the
   * datastore as it is, contributions or none: the next pool is started with `--datastore FILE`, and a pool that
   * had nothing contributed left none, so that start failed (review h133: a restart loop under systemd). A FILE
   * that is there is the one this pool loaded (the pool refuses any other at start), so nothing new, nothing written.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (this.saving) await this.saving;
    if (this.unsaved > 0 || !existsSync(this.file)) await this.save();
  }

  private async write(): Promise<void> {
    const taken = this.unsaved;
    this.unsaved = 0;
    const t0 = performance.now();
    try {
      await this.datastore.flush();
      // Counted in the turn save() takes its chunks in: outputs indexed while it writes are not in the file.
      const tokens = this.datastore.tokenCount;
      const bytes = await this.datastore.save(this.file);
      this.options.onSaved?.('ok', bytes);
      await this.copyNextTokens();
      this.options.log?.(
        `datastore saved to ${this.file}: ${tokens} tokens, ${(bytes / 2 ** 20).toFixed(1)} MiB, ${taken} new outputs, ${(performance.now() - t0).toFixed(0)} ms`,
      );
    } catch (err) {
      // Nothing is lost: the datastore still holds them, and the next save retries.
      this.unsaved += taken;
      this.options.onSaved?.('error', 0);
      this.options.log?.(`cannot save the datastore to ${this.file}: ${(err as Error).message}`);
    }
  }

  /** The last copy of the next-token table failed (said once, until one works). */
  private tableCopyFailed = false;

  /**
   * The loaded next-token table beside the saved file, so that a pool that
   * loads FILE drafts as this one does: copied once, whole or not at all (a
   * crash mid-copy left half a table, which the next start refused), and
   * again where the one there is not the same size (such a half copy).
   * Its failure is not the save's: the datastore and its outputs are saved.
   */
  private async copyNextTokens(): Promise<void> {
    const source = this.options.nextTokensFile;
    if (!source) return;
    const target = nextTokenTablePath(this.file);
    if (path.resolve(source) === path.resolve(target)) return;
    try {
      const [from, there] = await Promise.all([stat(source), stat(target).catch(() => null)]);
      if (there?.size === from.size) return;
      await copyFileAtomically(source, target);
      if (this.tableCopyFailed) this.options.log?.(`next-token table copied beside ${this.file} (${target})`);
      this.tableCopyFailed = false;
    } catch (err) {
      if (!this.tableCopyFailed) {
        this.options.log?.(
          `the datastore is saved, but its next-token table could not be copied beside it (${target}): ${(err as Error).message}; tried again at each save, and a pool loading ${this.file} until then runs without it or with --next-tokens ${source}`,
        );
      }
      this.tableCopyFailed = true;
    }
  }
}
