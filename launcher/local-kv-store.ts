/**
 * wrangler dev's local store as a KvStore: opened once a command in this process with Miniflare, as `wrangler kv
 * --local` opens it (its KV persisted under <persistTo>/v3/kv, under wrangler.toml's namespace id), and disposed of at
 * the end. Each `wrangler kv` run was a wrangler start and a workerd of its own, ~1-2 s of CPU, two or three a
 * command; one workerd now serves the whole command.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import type { Miniflare } from 'miniflare';
import { CliError } from '../gpu-pool/cli/cli-error';
import type { KvStore, ListedKey } from './edge-kv';
import { repoRoot } from './stack';

type LocalNamespace = Awaited<ReturnType<Miniflare['getKVNamespace']>>;

/**
 * Times an operation (or the store's opening) is tried again when the store was busy: its SQLite files are opened by
 * every workerd on the folder (another `sssd key` command, or `wrangler dev` serving the edge from it), and one beside
 * another now and then finds them locked (SQLITE_BUSY): at start, where workerd then fails to start, or in an
 * operation, which KV answers 500. Every operation here is one a repeat leaves as one run would (a list, a get, a put
 * of the same value, a delete), so running it again is safe.
 */
const LOCAL_BUSY_RETRIES = 4;
/** A busy store in KV's words ("KV GET failed: 500 Internal Server Error") or workerd's ("database is locked: SQLITE_BUSY"). */
const LOCAL_BUSY = /\bKV [A-Z]+ failed: 500\b|\bSQLITE_BUSY\b|database is locked/;
/** What of workerd's output an error quotes, at most (its last lines). */
const QUOTED_OUTPUT = 2_000;
/**
 * How long a failed operation waits for workerd's account of it: KV answers an operation SQLite refused "internal
 * error; reference = …", and workerd prints why (SQLITE_BUSY) on its stderr, which may reach us after the answer.
 */
const OUTPUT_SETTLE_MS = 100;

/** The namespace id wrangler.toml binds SSSD_KV to: wrangler's local store keeps the namespace under it. */
function namespaceId(command: string): string {
  const config = path.join(repoRoot, 'wrangler.toml');
  const id = /\[\[kv_namespaces\]\][^[]*?\bbinding\s*=\s*"SSSD_KV"[^[]*?\bid\s*=\s*"([^"]+)"/.exec(readFileSync(config, 'utf8'))?.[1];
  if (id === undefined) throw new CliError(`${command}: ${config} binds no KV namespace id to SSSD_KV, so the local store's namespace is not known`);
  return id;
}

/** What workerd printed since `from` (its stdout and stderr, Miniflare's default being to pass them to ours). */
class RuntimeOutput {
  private text = '';
  readonly handle = (stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream): void => {
    for (const stream of [stdout, stderr]) stream.on('data', (chunk: Buffer | string) => (this.text += chunk.toString()));
  };
  get length(): number {
    return this.text.length;
  }
  /** What it printed since `from`, without its stack lines (addresses in workerd's binary). */
  since(from: number): string {
    const lines = stripVTControlCharacters(this.text.slice(from)).split('\n');
    return lines.filter((line) => !line.startsWith('stack: ')).join('\n').trim().slice(-QUOTED_OUTPUT);
  }
}

/**
 * `attempt` run until it succeeds, again where the store was busy (LOCAL_BUSY_RETRIES); a CliError naming `what`
 * otherwise. `after` runs between a failed try and the next (the opening disposes of the workerd that failed to start).
 */
async function whileBusy<T>(what: string, command: string, output: RuntimeOutput, attempt: () => Promise<T>, after: () => Promise<void> = async () => {}): Promise<T> {
  for (let tries = 0; ; tries++) {
    const from = output.length;
    try {
      return await attempt();
    } catch (err) {
      await new Promise((resolve) => setTimeout(resolve, OUTPUT_SETTLE_MS));
      // Miniflare's "failed to start" points to workerd's output "above": it is quoted below instead.
      const message = (err instanceof Error ? err.message : String(err)).replace(/ There is likely additional logging output above\.$/, '');
      const said = [message, output.since(from)].filter((text) => text !== '').join('\n');
      await after();
      const busy = LOCAL_BUSY.test(said);
      if (busy && tries < LOCAL_BUSY_RETRIES) {
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** tries));
        continue;
      }
      const tried = busy ? ` (the store stayed busy: ${tries + 1} tries)` : tries > 0 ? ` (try ${tries + 1}; the store was busy at the earlier ones)` : '';
      throw new CliError(`${command}: the local store's ${what} failed${tried}:\n${said}`);
    }
  }
}

/** The store's operations on the opened namespace, each tried again while the store is busy. */
function storeOn(kv: LocalNamespace, output: RuntimeOutput, command: string): KvStore {
  return {
    list: (prefix) =>
      whileBusy('list', command, output, async () => {
        const listed: ListedKey[] = [];
        let cursor: string | undefined;
        do {
          const page = await kv.list({ ...(prefix !== undefined ? { prefix } : {}), ...(cursor !== undefined ? { cursor } : {}) });
          for (const { name, metadata } of page.keys) listed.push(metadata === undefined ? { name } : { name, metadata });
          cursor = page.list_complete ? undefined : page.cursor;
        } while (cursor !== undefined);
        return listed;
      }),

    async get(names) {
      const values = new Map<string, string | null>();
      for (const name of names) values.set(name, await whileBusy('get', command, output, () => kv.get(name, 'text')));
      return values;
    },

    async put(name, value, metadata) {
      await whileBusy('put', command, output, () => kv.put(name, value, metadata === undefined ? {} : { metadata }));
    },

    async delete(names) {
      for (const name of names) await whileBusy('delete', command, output, () => kv.delete(name));
    },
  };
}

/** Runs `work` on the local store in `persistTo` (a folder checkLocalStore found one in), opened for it and disposed of after. */
export async function withLocalKvStore<T>(persistTo: string, command: string, work: (store: KvStore) => Promise<T>): Promise<T> {
  const id = namespaceId(command);
  // Imported here, not at the top: ~1 s of CPU to load, which `sssd up` and the deployed namespace's commands never use.
  const { Miniflare } = await import('miniflare');
  const output = new RuntimeOutput();
  let miniflare: Miniflare | undefined;
  // A workerd that failed or is done with: stopped (Miniflare's own failure there is not the command's).
  const dispose = async (): Promise<void> => {
    await miniflare?.dispose().catch(() => {});
    miniflare = undefined;
  };
  try {
    const kv = await whileBusy(
      'opening',
      command,
      output,
      async () => {
        miniflare = new Miniflare({
          modules: true,
          script: 'export default { fetch() { return new Response(null, { status: 404 }); } }',
          kvNamespaces: { SSSD_KV: id },
          kvPersist: path.join(persistTo, 'v3', 'kv'),
          compatibilityDate: '2025-01-01',
          handleRuntimeStdio: output.handle,
        });
        return miniflare.getKVNamespace('SSSD_KV');
      },
      dispose,
    );
    return await work(storeOn(kv, output, command));
  } finally {
    await dispose();
  }
}
