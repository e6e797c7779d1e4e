/**
 * What a client needs to have a reply again: the system fingerprint of what
 * wrote it, and the seed it ran with (choice 0's: the others' are derived
 * from it, request-seed.ts). Sent as headers on every generation route, the
 * Responses API's included (its objects have no field for them), and on a
 * stored response read back.
 */
export interface Reproduction {
  fingerprint: string;
  /** The seed choice 0 ran with (0 to 2^53 - 1), drawn at the edge where the request sent none; null: greedy and unseeded. */
  seed: number | null;
}

export const FINGERPRINT_HEADER = 'x-sssd-fingerprint';
export const SEED_HEADER = 'x-sssd-seed';

export function reproductionHeaders(reproduction: Reproduction): Record<string, string> {
  return { [FINGERPRINT_HEADER]: reproduction.fingerprint, ...(reproduction.seed !== null ? { [SEED_HEADER]: String(reproduction.seed) } : {}) };
}
