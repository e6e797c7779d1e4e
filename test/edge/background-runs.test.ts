/**
 * The count of background runs an isolate still carries on (what a local
 * stack waits for before it stops its edge): each until its work settles,
 * resolved or not, and none past its bound (a run whose waitUntil was cut).
 */
import { describe, expect, it } from 'vitest';
import { backgroundRunsPending, countBackgroundRun } from '../../edge/background-runs';

describe('background runs pending', () => {
  it('counts each run until its work settles, resolved or rejected, and none past its bound', async () => {
    const now = Date.now();
    expect(backgroundRunsPending(now)).toBe(0);
    let finish: () => void = () => undefined;
    let fail: (err: Error) => void = () => undefined;
    const resolving = new Promise<void>((resolve) => (finish = resolve));
    const rejecting = new Promise<void>((_, reject) => (fail = reject));
    rejecting.catch(() => undefined);
    countBackgroundRun(resolving, now + 60_000);
    countBackgroundRun(rejecting, now + 60_000);
    countBackgroundRun(new Promise(() => undefined), now + 1_000);
    expect(backgroundRunsPending(now)).toBe(3);
    finish();
    await resolving;
    expect(backgroundRunsPending(now)).toBe(2);
    fail(new Error('KV down'));
    await rejecting.catch(() => undefined);
    expect(backgroundRunsPending(now)).toBe(1);
    // The one that never settles is not counted past its bound, and is forgotten then.
    expect(backgroundRunsPending(now + 1_001)).toBe(0);
    expect(backgroundRunsPending(now)).toBe(0);
  });
});
