/**
 * What one generating request stores, charged to its key's storage budget
 * (storage-budget.ts) in the bytes it writes: its stored response (and a
 * background stream's kept events), its stored chat completion, its turn
 * appended to a conversation. What is known before the generation (the input
 * it will store) is taken first, and refused where the budget cannot cover
 * it, before any pool compute is spent; the rest (the output, a chain's
 * conversation carried on) is charged as written, whatever is left: the
 * generation has run and been paid for, so its record is kept and the
 * bucket goes below zero, repaid before the key's next request that stores
 * (docs/edge.md, "Storage").
 *
 * A record the request writes more than once (a background response queued,
 * then ended; a stream's events, written again each second as they grow)
 * replaces itself within the run: it is charged at its largest, not at each
 * write.
 *
 * Settled once, when the request's work is over (index.ts: its reply's last
 * write, a background run's end, or its refusal): what it reserved and did
 * not write is given back then (review h227, finding 1: a cancelled stream, a
 * turn not appended, a record refused or a write that failed kept the whole
 * reservation, and two cancelled turns spent 86% of a key's day).
 */
import { STORAGE_FLOOR_BYTES } from './storage-budget';

/** The key's bucket as one request sees it (StorageBudget's take and charge, bound to the key). */
export interface KeyStorage {
  /**
   * Takes all of `bytes` where the budget has them (more than a day's worth, where it is full: the rest below zero):
   * null, else the whole seconds until it does (nothing taken). StorageBudget.takeAll.
   */
  take(bytes: number): number | null;
  /** Takes `bytes` whatever is left (negative: gives them back). */
  charge(bytes: number): void;
}

export class StorageMeter {
  /** Bytes taken from the budget for this request so far. */
  private taken = 0;
  /** What the request's records come to: the sum of each one's largest write. */
  private written = 0;
  private readonly largest = new Map<string, number>();
  /** When its request last showed life (alive). */
  private seen: number;
  /** keepAlive's timer, until settle. */
  private heartbeat: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly storage: KeyStorage,
    now = Date.now(),
  ) {
    this.seen = now;
  }

  /** Its request's code still runs: told from a timer of the request's own, as its slot's lease is (rate-limiter.ts). */
  alive(now = Date.now()): void {
    this.seen = now;
  }

  /**
   * Shows life every `everyMs` from a timer of its own until it settles: started where it holds a reservation
   * (HeldMeters), so a request that stores nothing runs no timer for it.
   */
  keepAlive(everyMs: number): void {
    this.alive();
    this.heartbeat ??= setInterval(() => this.alive(), everyMs);
  }

  /** Whether its request has shown no life for more than `leaseMs`: the runtime cancelled it, and it never settles itself. */
  lapsed(leaseMs: number, now = Date.now()): boolean {
    return now - this.seen > leaseMs;
  }

  /**
   * Before the generation: takes `bytes` (what the request will store at least, STORAGE_FLOOR_BYTES at least) where
   * the budget has them, counted against what it then writes; else the seconds until it does (nothing taken).
   */
  reserve(bytes: number): number | null {
    const need = Math.max(STORAGE_FLOOR_BYTES, bytes);
    const retryAfterS = this.storage.take(need);
    if (retryAfterS === null) this.taken += need;
    return retryAfterS;
  }

  /** A write of `bytes` (its value as UTF-8) to the record `name`: what takes the request past what it took is charged. */
  wrote(name: string, bytes: number): void {
    const size = Math.max(STORAGE_FLOOR_BYTES, bytes);
    const before = this.largest.get(name) ?? 0;
    if (size <= before) return;
    this.largest.set(name, size);
    this.written += size - before;
    if (this.written > this.taken) {
      this.storage.charge(this.written - this.taken);
      this.taken = this.written;
    }
  }

  /**
   * The request's work is over: what it took and did not write is given back, so it is charged what it wrote, no
   * more. Once is enough, and more do nothing; a write after it (none is expected) is charged whole, as any write
   * past what was taken, so a settle that came too soon undercharges nothing.
   */
  settle(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.taken <= this.written) return;
    this.storage.charge(this.written - this.taken);
    this.taken = this.written;
  }
}

/**
 * The meters of each key that hold what they reserved, until they settle. The runtime cancels a request whose client
 * leaves unnoticed (workerd: none of its code runs again, its timers included), so its work never ends and it never
 * settles itself; its meter then shows no life, and the key's next reservation settles it once its lease lapsed,
 * before it takes (an e2e run had 3 streams left so keep 591 KB of a 1 MiB day for good). Held here, not waited on
 * (waitUntil): kept running, a left stream the runtime never told of ran to its end and stored its turn.
 */
export class HeldMeters {
  private readonly byKey = new Map<string, Set<StorageMeter>>();

  hold(key: string, meter: StorageMeter): void {
    let held = this.byKey.get(key);
    if (held === undefined) this.byKey.set(key, (held = new Set()));
    held.add(meter);
  }

  /** `meter` settled (its request's work ended): no longer held. */
  release(key: string, meter: StorageMeter): void {
    const held = this.byKey.get(key);
    if (held === undefined) return;
    held.delete(meter);
    if (held.size === 0) this.byKey.delete(key);
  }

  /** Settles the meters of `key` whose request went silent for more than `leaseMs`, giving back what they did not write. */
  settleLapsed(key: string, leaseMs: number, now = Date.now()): void {
    const held = this.byKey.get(key);
    if (held === undefined) return;
    for (const meter of held) {
      if (!meter.lapsed(leaseMs, now)) continue;
      meter.settle();
      this.release(key, meter);
    }
  }
}
