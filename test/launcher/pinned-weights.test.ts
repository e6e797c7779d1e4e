// `sssd up` with SSSD_MODEL_SHA256 pinning other weights than --model's: the edge would answer every request 503
// "retry shortly", for good; `up` says so at start (review h158), asking the real pool what it serves.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pinnedWeightsProblem } from '../../launcher/up';
import { models } from '../support/shared-data';
import { realPoolForTests } from '../support/real-pool';

const pool = realPoolForTests();

describe("up's check of the pinned weights", () => {
  it('says when SSSD_MODEL_SHA256 pins other weights than the pool serves, and nothing where they agree or none are pinned', async () => {
    const served = createHash('sha256').update(readFileSync(models.stories260K.checkpoint)).digest('hex');
    const other = createHash('sha256').update(readFileSync(models.llama2xs.checkpoint)).digest('hex');
    const problem = await pinnedWeightsProblem(pool.url, pool.token, other);
    expect(problem).toContain(`pins weights ${other.slice(0, 12)}, but the pool serves stories260K with weights ${served.slice(0, 12)}`);
    expect(problem).toContain(`set it to ${served}`);
    for (const pinned of [served, served.toUpperCase(), undefined, '']) expect(await pinnedWeightsProblem(pool.url, pool.token, pinned)).toBeNull();
    // A pool that cannot be asked (a wrong token) says nothing here: its own errors say more.
    expect(await pinnedWeightsProblem(pool.url, 'not-the-token', other)).toBeNull();
  });
});
