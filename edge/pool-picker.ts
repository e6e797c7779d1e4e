/**
 * Which pool gets a request: healthy pools by load (least loaded first), then
 * the ones whose health is unknown or bad (they may have recovered; trying them
 * last costs only a failed connect). Health is cached briefly per isolate and
 * refreshed in the background, so the per-request path waits for a health
 * check only when no pool is known to be up.
 */
import type { PoolHealth } from '../shared/protocol';
import { PoolClient } from './pool-client';

const HEALTH_TTL_MS = 2_000;
const FAILED_TTL_MS = 1_000;

interface HealthEntry {
  health: PoolHealth | null;
  until: number;
}

export class PoolPicker {
  private readonly clients: PoolClient[];
  private readonly entries = new Map<string, HealthEntry>();

  constructor(urls: readonly string[], token: string) {
    this.clients = urls.map((url) => new PoolClient(url, token));
  }

  get size(): number {
    return this.clients.length;
  }

  client(url: string): PoolClient | undefined {
    return this.clients.find((c) => c.baseUrl === url);
  }

  /** Mark a pool as failing (a generate call could not reach it) until its health is checked again. */
  markFailed(url: string): void {
    this.entries.set(url, { health: null, until: Date.now() + FAILED_TTL_MS });
  }

  /**
   * All pools in the order to try them. `waitUntil` keeps a background health
   * check alive past the request that started it (workerd would cancel it).
   */
  async ordered(waitUntil?: (promise: Promise<unknown>) => void): Promise<PoolClient[]> {
    const now = Date.now();
    const refreshing = Promise.all(this.clients.map((client) => this.refresh(client, now)));
    waitUntil?.(refreshing);
    // Stale-while-revalidate: wait for health checks only when no pool is known to be up.
    const anyKnownUp = this.clients.some((client) => this.entries.get(client.baseUrl)?.health?.ok === true);
    if (!anyKnownUp) await refreshing;
    const score = (client: PoolClient): number => {
      const health = this.entries.get(client.baseUrl)?.health;
      return health && health.ok ? health.load : Number.POSITIVE_INFINITY;
    };
    return [...this.clients].sort((a, b) => score(a) - score(b));
  }

  private refresh(client: PoolClient, now: number): Promise<void> {
    const entry = this.entries.get(client.baseUrl);
    if (entry && entry.until > now) return Promise.resolve();
    // Claim the refresh so concurrent requests keep the stale figure instead of
    // checking again. Promises are not shared across requests: in workerd a
    // request must not wait on I/O that another request started.
    const next: HealthEntry = { health: entry?.health ?? null, until: now + HEALTH_TTL_MS };
    this.entries.set(client.baseUrl, next);
    return client.health().then(
      (health) => {
        next.health = health;
        next.until = Date.now() + HEALTH_TTL_MS;
      },
      () => {
        next.health = null;
        next.until = Date.now() + FAILED_TTL_MS;
      },
    );
  }
}
