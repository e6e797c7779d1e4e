/**
 * The soak's check that no user's request is lost from their cache at the
 * edge (the KV value a user's requests merge into when they end, one put a
 * second per user): for each user the soak names, the requests merged into
 * their cache while it ran (GET /v1/user-cache's `requests_merged`, before
 * and after) must count at least every request of theirs that drafted at the
 * edge and ended whole, and at most every one that may have run (a client
 * that hung up, a 5xx: its merge may or may not have come).
 */
import { edgeTrieDepth } from '../../shared/drafting/edge-trie';
import type { SoakReply } from './soak-request';
import type { SoakTally } from './soak-tally';

/**
 * The users one soak's requests name: five, new to each run (a request cut in
 * an earlier run on the same key may merge after this one read its counts).
 */
export function soakUsers(seed: number): string[] {
  const run = `${seed}-${Date.now().toString(36)}-${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  return [0, 1, 2, 3, 4].map((i) => `soak-${run}-u${i}`);
}

/** How long the merges of the last requests may take to land: a request waits up to 28 s for its write (edge/user-cache-store.ts). */
const SETTLE_MS = 45_000;
/** How long a read of a user's cache may be refused with 429 (the soak spent the key's rate limit) before it counts as failed. */
const READ_RETRY_MS = 60_000;

interface UserLedger {
  /** Requests that drafted at the edge and ended whole: each merged. */
  whole: number;
  /** Requests that may have merged (whole, cut, or a 5xx). */
  mayMerge: number;
}

type Get = (path: string) => Promise<SoakReply>;

export class UserCacheLedger {
  private readonly ledgers = new Map<string, UserLedger>();

  private constructor(
    private readonly tally: SoakTally,
    private readonly users: readonly string[],
    /** Each user's merged count at the start. */
    private readonly before: ReadonlyMap<string, number>,
  ) {}

  /** Reads each user's count; null where the edge has no GET /v1/user-cache or keeps no caches (nothing to check). */
  static async start(get: Get, tally: SoakTally, users: readonly string[]): Promise<UserCacheLedger | null> {
    const before = new Map<string, number>();
    for (const user of users) {
      const view = await readView(get, user);
      if (view === null || !view.enabled) {
        tally.count(view === null ? 'user caches unreadable: unchecked' : 'user caches off: unchecked');
        return null;
      }
      before.set(user, view.requests_merged);
    }
    return new UserCacheLedger(tally, users, before);
  }

  /** Notes a request and its reply (any route: the Responses API's merge as chat's do). */
  note(body: string | Buffer, reply: SoakReply): void {
    if (typeof body !== 'string' || !(body.includes('"user"') || body.includes('"safety_identifier"'))) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return;
    }
    const { user: named, safety_identifier: safety, speculation, store, max_tokens, max_completion_tokens, max_output_tokens } = parsed as Record<string, unknown>;
    // The Responses API reads `user` first, then `safety_identifier`.
    const user = named ?? safety;
    // A request with speculation off neither reads nor writes the cache; one with store false writes nothing to it;
    // nor does a reply of one token, which leaves nothing to draft (edgeTrieDepth; edge/completion-handler.ts).
    const limit = max_tokens ?? max_completion_tokens ?? max_output_tokens;
    const nothingToDraft = typeof limit === 'number' && edgeTrieDepth(limit, 0) === 0;
    if (typeof user !== 'string' || !this.users.includes(user) || speculation === 'off' || store === false || nothingToDraft) return;
    // Refused before it ran (a 4xx, a 429): no merge.
    if (reply.status >= 400 && reply.status < 500) return;
    let ledger = this.ledgers.get(user);
    if (!ledger) this.ledgers.set(user, (ledger = { whole: 0, mayMerge: 0 }));
    ledger.mayMerge++;
    if (reply.status === 200 && reply.complete) {
      ledger.whole++;
      this.tally.count('user cache requests whole');
    }
  }

  /** Waits for the merges to land (up to SETTLE_MS), then checks each user's count. */
  async check(get: Get, tally: SoakTally): Promise<void> {
    const deadline = Date.now() + SETTLE_MS;
    for (const user of this.users) {
      const ledger = this.ledgers.get(user) ?? { whole: 0, mayMerge: 0 };
      let merged = 0;
      for (;;) {
        const view = await readView(get, user);
        if (view === null) {
          tally.violate(`user cache: GET /v1/user-cache?user=${user} failed after the soak`, true);
          break;
        }
        merged = view.requests_merged - (this.before.get(user) ?? 0);
        if (merged >= ledger.whole || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      tally.count('user caches checked');
      if (merged < ledger.whole) {
        tally.violate(`user cache: ${user}'s cache took ${merged} of the soak's requests, where ${ledger.whole} of theirs drafted at the edge and ended whole (${ledger.whole - merged} lost)`, true);
      } else if (merged > ledger.mayMerge) {
        tally.violate(`user cache: ${user}'s cache took ${merged} of the soak's requests, more than the ${ledger.mayMerge} of theirs that could have merged`, true);
      }
    }
  }
}

interface View {
  enabled: boolean;
  requests_merged: number;
}

async function readView(get: Get, user: string): Promise<View | null> {
  // A 429 (the key's rate limit, spent by the soak) passes: waited out as its Retry-After says.
  const giveUpAt = Date.now() + READ_RETRY_MS;
  for (;;) {
    const reply = await get(`/v1/user-cache?user=${encodeURIComponent(user)}`);
    if (reply.status === 429 && Date.now() < giveUpAt) {
      const seconds = Number(reply.retryAfter);
      await new Promise((r) => setTimeout(r, Math.min(Math.max(Number.isFinite(seconds) ? seconds * 1000 : 1000, 250), giveUpAt - Date.now())));
      continue;
    }
    if (reply.status !== 200) return null;
    try {
      const view = JSON.parse(reply.text) as Partial<View>;
      return typeof view.requests_merged === 'number' ? { enabled: view.enabled !== false, requests_merged: view.requests_merged } : null;
    } catch {
      return null;
    }
  }
}
