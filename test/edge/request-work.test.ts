import { describe, expect, it } from 'vitest';
import { RequestWork } from '../../edge/request-work';

/** A promise and the functions that settle it. */
function pending(): { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Whether `promise` has settled once the tasks queued before this call ran. */
async function settledYet(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 0));
  return settled;
}

describe('RequestWork', () => {
  it('ends at once where the request has no work past its Response', async () => {
    expect(await settledYet(new RequestWork().ended())).toBe(true);
  });

  it('ends once every work has, a failed one too, and never rejects', async () => {
    const work = new RequestWork();
    const stream = pending();
    const run = pending();
    work.add(stream.promise);
    work.add(run.promise);
    const ended = work.ended();
    stream.reject(new Error('the pool failed'));
    expect(await settledYet(ended)).toBe(false);
    run.resolve();
    expect(await settledYet(ended)).toBe(true);
    await expect(ended).resolves.toBeUndefined();
  });

  it('waits for work added while it waits (a background run started once its queued record was written)', async () => {
    const work = new RequestWork();
    const first = pending();
    const later = pending();
    work.add(first.promise);
    const ended = work.ended();
    work.add(later.promise);
    first.resolve();
    expect(await settledYet(ended)).toBe(false);
    later.resolve();
    expect(await settledYet(ended)).toBe(true);
  });
});
