/**
 * The version of what turns a request's seed into text: the seed's mapping
 * and each choice's seed (request-seed.ts), the noise (gumbel-noise.ts) and
 * the pool's sampler that reads it (gpu-pool/runtime/sampling.ts). Bumped
 * with any change there that makes a seeded request write other text: it is
 * part of the edge's `system_fingerprint` (edge/system-fingerprint.ts), which
 * is how a client learns that a seed no longer gives what it gave.
 *
 * 1: noise from the seed's low 32 bits (until 2026-12-05).
 * 2: noise from all 53 bits (seeds at or above 2^32 draw other text).
 * 3: choice i > 0 of `n` seeded by a hash of (seed, i), not seed + i
 *    (review h190: seed k and seed k + 1 shared n - 1 of their choices).
 */
export const SAMPLER_VERSION = 3;
