/**
 * `system_fingerprint` (OpenAI's and vLLM's field): names everything that
 * decides what a seeded request writes, so a client that caches or compares
 * replies by request learns when the same request may no longer give the same
 * text. Made of the weights' and tokenizer's SHA-256 (the pool's /v1/info),
 * the sampler's version (SAMPLER_VERSION: seeds, noise) and the stop
 * matcher's (STOP_MATCHER_VERSION: where a stop string cuts the text).
 */
import { STOP_MATCHER_VERSION, type PoolInfo } from '../shared/protocol';
import { SAMPLER_VERSION } from '../shared/sampling/sampler-version';
import { sha256Hex } from './api-keys';

export interface FingerprintParts {
  /** The checkpoint's SHA-256 (null: a pool from before it named it). */
  weights: string | null;
  tokenizer: string;
  sampler: number;
  stopMatcher: number;
}

/** Hex digits after `fp_`, as OpenAI's (`fp_44709d6fcb`). */
const FINGERPRINT_DIGITS = 10;

export async function systemFingerprint(parts: FingerprintParts): Promise<string> {
  const hash = await sha256Hex(JSON.stringify([parts.weights, parts.tokenizer, parts.sampler, parts.stopMatcher]));
  return `fp_${hash.slice(0, FINGERPRINT_DIGITS)}`;
}

/** The fingerprint of what a pool of this /v1/info serves, with this edge's sampler and stop matcher. */
export function servedFingerprint(info: PoolInfo): Promise<string> {
  return systemFingerprint({ weights: info.model.sha256 ?? null, tokenizer: info.tokenizer.sha256, sampler: SAMPLER_VERSION, stopMatcher: STOP_MATCHER_VERSION });
}
