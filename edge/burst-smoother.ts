/**
 * Paces the tokens of speculative bursts into an even cadence: a verification
 * step may emit 1..k tokens at once; spreading them over the expected time to
 * the next step hides the speculation settings from the client (vLLM PR #45678: bursty chunks reveal them)
 * and reads smoother. The gap never lets a backlog build up: with more queued
 * than one step's worth it shortens, and at the end of generation it drains fast.
 */
const EMA = 0.3;
const MAX_GAP_MS = 150;
const DRAIN_GAP_MS = 8;

export class BurstSmoother {
  private lastBurstMs = -1;
  private stepMs = 0;
  private perStep = 1;

  /** A burst of `count` pieces arrived at `nowMs`. */
  onBurst(count: number, nowMs: number): void {
    if (this.lastBurstMs >= 0) {
      const interval = nowMs - this.lastBurstMs;
      this.stepMs = this.stepMs === 0 ? interval : this.stepMs + EMA * (interval - this.stepMs);
      this.perStep += EMA * (count - this.perStep);
    }
    this.lastBurstMs = nowMs;
  }

  /** Milliseconds to wait after sending a piece, with `queued` pieces still waiting. */
  gapMs(queued: number, upstreamDone: boolean): number {
    if (queued === 0 || this.stepMs === 0) return 0;
    let gap = this.stepMs / Math.max(1, this.perStep);
    if (queued > this.perStep) gap *= this.perStep / queued;
    if (upstreamDone) gap = Math.min(gap, DRAIN_GAP_MS);
    return Math.min(gap, MAX_GAP_MS);
  }
}
