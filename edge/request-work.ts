/**
 * What a generating request goes on doing past its Response: a stream's task
 * (its frames, then what it stores at its end or once its client left), a
 * whole reply's wait for its body, a background run and its kept events. The
 * request is over once all of it has ended, which is when what it stored is
 * settled (index.ts, StorageMeter.settle): settled at its answer, a late
 * write would find its reservation lent to the key's other requests
 * meanwhile; settled only where it threw, a request that wrote less than it
 * reserved kept the rest taken (review h227, finding 1).
 */
export class RequestWork {
  private readonly works: Array<Promise<unknown>> = [];

  /** `work` goes on past the Response; whether it fails is its own to tell (it ends either way). */
  add(work: Promise<unknown>): void {
    this.works.push(work);
  }

  /** Settles once every work added has, those added while it waits too (never rejects). */
  async ended(): Promise<void> {
    for (let seen = 0; seen < this.works.length; ) {
      const upTo = this.works.length;
      await Promise.allSettled(this.works.slice(seen, upTo));
      seen = upTo;
    }
  }
}
