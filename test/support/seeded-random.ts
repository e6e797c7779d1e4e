/** Deterministic PRNG for property tests: failures reproduce from the seed. */
export { seededRandom } from '../../shared/seeded-random';
