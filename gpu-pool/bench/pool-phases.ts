/**
 * The pool's time by scheduler phase (`sssd_pool_phase_seconds_total`), read
 * off its `/metrics` around a bench window: where the pool's time went for
 * one method (drafting, the pass, acceptance, writes between steps, waiting
 * for requests), which tokens/s alone does not say.
 */
import { PHASE_SECONDS_METRIC, SCHEDULER_PHASES, type SchedulerPhase } from '../metrics/pool-metrics';

export type PhaseSeconds = Record<SchedulerPhase, number>;

export function zeroPhases(): PhaseSeconds {
  return Object.fromEntries(SCHEDULER_PHASES.map((p) => [p, 0])) as PhaseSeconds;
}

// The phase label, and any others the pool adds (its model_name) after it, whose quoted values may hold any character.
const SAMPLE = new RegExp(`^${PHASE_SECONDS_METRIC}\\{phase="([a-z]+)"(?:,[a-zA-Z_]+="(?:[^"\\\\]|\\\\.)*")*\\} (\\S+)$`);

/** The phase counters in a Prometheus text exposition; null when it has none (a pool without them). */
export function parsePhaseSeconds(text: string): PhaseSeconds | null {
  const out = zeroPhases();
  let found = false;
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (!m || !(SCHEDULER_PHASES as readonly string[]).includes(m[1])) continue;
    const v = Number(m[2]);
    if (!Number.isFinite(v)) continue;
    out[m[1] as SchedulerPhase] = v;
    found = true;
  }
  return found ? out : null;
}

let refusalSaid = false;
function refusedOnce(line: string): void {
  if (refusalSaid) return;
  refusalSaid = true;
  process.stderr.write(line);
}

/** The pool's phase counters now; null when `/metrics` cannot be read or lacks them. */
export async function readPoolPhases(poolUrl: string, token: string | null): Promise<PhaseSeconds | null> {
  try {
    const res = await fetch(`${poolUrl}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : undefined });
    // Said, not taken for a pool without the counters (review h241): the phases would be left out without a word.
    if (res.status === 401) refusedOnce(`bench-serve: the pool's /metrics refused the token sent (401): set SSSD_METRICS_TOKEN to the pool's; the phases are not measured\n`);
    if (!res.ok) return null;
    return parsePhaseSeconds(await res.text());
  } catch {
    return null;
  }
}

/** Adds `after - before` into `into`. */
export function addPhaseDelta(into: PhaseSeconds, before: PhaseSeconds, after: PhaseSeconds): void {
  for (const p of SCHEDULER_PHASES) into[p] += Math.max(0, after[p] - before[p]);
}
