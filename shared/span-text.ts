/**
 * A span of time in words, in the largest whole unit that fits: 40 s,
 * 12 min, 5 h, 3 days. For messages and logs (the pool's calibration age,
 * the edge's "not served for"); runs unchanged in workerd and Node.
 */
export function spanText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 2 * 3600) return `${Math.floor(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} days`;
}
