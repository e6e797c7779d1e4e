// The soak's user-cache ledger: which replies it expects a merge for. The edge's counts it reads are served here by a
// function standing for GET /v1/user-cache; the ledger against a real edge runs in openai-api.test.ts's soak.
import { describe, expect, it } from 'vitest';
import type { SoakReply } from '../../../gpu-pool/bench/soak-request';
import { SoakTally } from '../../../gpu-pool/bench/soak-tally';
import { UserCacheLedger } from '../../../gpu-pool/bench/soak-user-caches';

const whole: SoakReply = { status: 200, retryAfter: null, text: '{}', complete: true };

describe('the soak user-cache ledger', () => {
  it('expects a merge for a whole reply that drafted at the edge, and none for a reply of one token (nothing to draft, no merge)', async () => {
    const tally = new SoakTally();
    let merged = 0;
    const get = (): Promise<SoakReply> => Promise.resolve({ ...whole, text: JSON.stringify({ enabled: true, requests_merged: merged }) });
    const ledger = (await UserCacheLedger.start(get, tally, ['u']))!;
    ledger.note(JSON.stringify({ user: 'u', prompt: 'Lily', max_tokens: 8 }), whole);
    ledger.note(JSON.stringify({ user: 'u', prompt: 'Lily', max_tokens: 1 }), whole);
    ledger.note(JSON.stringify({ user: 'u', input: 'Lily', max_output_tokens: 1 }), whole);
    // The first merged (the edge wrote its cache); the one-token replies never do. Before, they were counted as lost.
    merged = 1;
    await ledger.check(get, tally);
    expect(tally.report().violations).toEqual([]);
  }, 60_000);
});
