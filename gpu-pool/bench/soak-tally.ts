/** What a soak sent and got back, and the promises it saw broken. */

export interface SoakReport {
  /** What was sent and what came back, e.g. "generate 200", "pair same", "stalled 0". */
  counts: Record<string, number>;
  /** Broken promises, each with the request that broke it (the first 20, and the final checks'). */
  violations: string[];
  /** Violations in all. */
  violationCount: number;
}

const MAX_VIOLATIONS_KEPT = 20;

export class SoakTally {
  private readonly counts: Record<string, number> = {};
  private readonly violations: string[] = [];
  private violationCount = 0;

  count(what: string): void {
    this.counts[what] = (this.counts[what] ?? 0) + 1;
  }

  /** `keep`: listed even past the first 20 (a final check's verdict). */
  violate(what: string, keep = false): void {
    this.violationCount++;
    if (keep || this.violations.length < MAX_VIOLATIONS_KEPT) this.violations.push(what);
  }

  report(): SoakReport {
    return { counts: { ...this.counts }, violations: [...this.violations], violationCount: this.violationCount };
  }
}

/** The report as a few lines: counts by kind, then the violations. */
export function formatSoakReport(report: SoakReport): string {
  const lines = Object.entries(report.counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([what, n]) => `  ${what.padEnd(24)} ${n}`);
  lines.unshift('sent and answered:');
  if (report.violationCount === 0) lines.push('no violations');
  else lines.push(`${report.violationCount} violation(s):`, ...report.violations.map((v) => `  ${v}`));
  return lines.join('\n');
}
