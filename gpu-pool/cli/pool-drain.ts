/**
 * How long a pool asked to stop takes: its drain (`sssd pool
 * --drain-seconds`, the running generations finishing) and its wind-down
 * after (the last datastore save, closing). A launcher that stops a pool
 * waits that long before it kills it.
 */

/** `--drain-seconds`' default. */
export const DEFAULT_DRAIN_SECONDS = 30;

/** The wind-down after the drain, at most. */
const WIND_DOWN_SECONDS = 10;

/** How long a launcher lets a pool with this drain stop before it kills it. */
export function poolStopGraceMs(drainSeconds = DEFAULT_DRAIN_SECONDS): number {
  return (drainSeconds + WIND_DOWN_SECONDS) * 1000;
}
