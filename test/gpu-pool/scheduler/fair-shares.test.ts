import { describe, expect, it } from 'vitest';
import { FairShares, queuePlacesFor } from '../../../gpu-pool/scheduler/fair-shares';

/** Admits from `queue` (tenant names, oldest first) until it is empty, each run ending before the next starts; the order of admission. */
function drain(shares: FairShares, queue: string[]): string[] {
  const order: string[] = [];
  const waiting = queue.map((tenant) => ({ tenant }));
  for (const w of waiting) shares.queued(w.tenant);
  while (waiting.length > 0) {
    const [next] = waiting.splice(shares.next(waiting), 1);
    shares.started(next.tenant);
    order.push(next.tenant);
    shares.ended(next.tenant);
  }
  return order;
}

describe('fair shares of batch rows between tenants', () => {
  it('take turns among tenants, each in its own order, whatever one of them queued', () => {
    expect(drain(new FairShares(), ['a', 'a', 'a', 'a', 'b', '', 'b', ''])).toEqual(['a', 'b', '', 'a', 'b', '', 'a', 'a']);
  });

  it('put the tenant with fewer rows running first', () => {
    const shares = new FairShares();
    shares.queued('x');
    shares.started('x');
    const queue = [{ tenant: 'x' }, { tenant: 'x' }, { tenant: 'y' }];
    for (const q of queue) shares.queued(q.tenant);
    expect(queue[shares.next(queue)].tenant).toBe('y');
  });

  it('do not hold a tenant served before behind every newcomer since: a newcomer joins the rotation at its back', () => {
    const shares = new FairShares();
    drain(shares, ['x']);
    // x queues again, then a stream of tenants new to the pool, one every admission.
    const queue = [{ tenant: 'n0' }, { tenant: 'n1' }, { tenant: 'x' }];
    for (const q of queue) shares.queued(q.tenant);
    const order: string[] = [];
    for (let i = 2; queue.length > 0; i++) {
      const [next] = queue.splice(shares.next(queue), 1);
      shares.started(next.tenant);
      shares.ended(next.tenant);
      order.push(next.tenant);
      if (i < 40) {
        queue.push({ tenant: `n${i}` });
        shares.queued(`n${i}`);
      }
    }
    // x, served once before the newcomers came, goes first; before, every newcomer ("never served") went ahead of it.
    expect(order.indexOf('x')).toBe(0);
  });

  it('never leave a tenant forgotten while it waited (past the bound) behind a busy one for ever', () => {
    const shares = new FairShares(2);
    shares.queued('x');
    shares.queued('w');
    // A third tenant past the bound of 2: the idle shares go, w's with it, while w still waits.
    shares.queued('p');
    const queue = [{ tenant: 'x' }, { tenant: 'w' }, ...Array.from({ length: 8 }, () => ({ tenant: 'x' }))];
    shares.queued('x');
    const order: string[] = [];
    while (queue.length > 0) {
      const [next] = queue.splice(shares.next(queue), 1);
      shares.started(next.tenant);
      shares.ended(next.tenant);
      order.push(next.tenant);
    }
    // As if queued anew at every turn, w came after all nine of x's (x served just before each look).
    expect(order.indexOf('w')).toBeLessThanOrEqual(1);
  });

  it('keep a bounded number of tenants: past it the idle ones are forgotten, never one with a row running', () => {
    const shares = new FairShares(8);
    shares.queued('busy');
    shares.started('busy');
    for (let i = 0; i < 20; i++) drain(shares, [`t${i}`]);
    expect(shares.tracked).toBeLessThanOrEqual(8);
    // 'busy' still counts its row: another tenant goes before it.
    const queue = [{ tenant: 'busy' }, { tenant: 'fresh' }];
    for (const q of queue) shares.queued(q.tenant);
    expect(queue[shares.next(queue)].tenant).toBe('fresh');
  });
});

/** A queue of tenants' generations (oldest first), each reserving `tokens`. */
function queueOf(tenants: string, tokens = 10): Array<{ tenant: string; reservedTokens: number; at: number }> {
  return [...tenants].map((tenant, at) => ({ tenant, reservedTokens: tokens, at }));
}

describe("fair shares of a full queue's places between tenants", () => {
  it('take nothing while a place and the tokens are free', () => {
    expect(queuePlacesFor('b', 10, queueOf('aaaa'), { freePlaces: 1, freeTokens: 10 })).toEqual([]);
  });

  it("give a newcomer the newest place of the tenant with the most queued, not the oldest", () => {
    const queue = queueOf('aaabaaccc');
    const given = queuePlacesFor('d', 10, queue, { freePlaces: 0, freeTokens: 1000 });
    expect(given?.map((g) => g.at)).toEqual([5]);
  });

  it("refuse a tenant once it would hold as many queued as the one giving way", () => {
    // a: 3 queued, b: 1. b's second takes a's newest (a keeps 2, b holds 2); its third is refused (a would keep 1 against b's 3).
    expect(queuePlacesFor('b', 10, queueOf('aaab'), { freePlaces: 0, freeTokens: 1000 })?.map((g) => g.at)).toEqual([2]);
    expect(queuePlacesFor('b', 10, queueOf('aabb'), { freePlaces: 0, freeTokens: 1000 })).toBeNull();
    // a: 2, b: 1. Giving b a's newest would leave a 1 against b's 2: refused.
    expect(queuePlacesFor('b', 10, queueOf('aab'), { freePlaces: 0, freeTokens: 1000 })).toBeNull();
    // The flooding tenant itself never takes a place from anyone.
    expect(queuePlacesFor('a', 10, queueOf('aaab'), { freePlaces: 0, freeTokens: 1000 })).toBeNull();
  });

  it('treat callers that name no tenant as one tenant', () => {
    expect(queuePlacesFor('', 10, queueOf('aa'), { freePlaces: 0, freeTokens: 1000 })?.map((g) => g.at)).toEqual([1]);
    const shared = [{ tenant: '', reservedTokens: 10 }, { tenant: '', reservedTokens: 10 }];
    expect(queuePlacesFor('', 10, shared, { freePlaces: 0, freeTokens: 1000 })).toBeNull();
  });

  it('take as many places as free the tokens asked for, or none at all', () => {
    // 25 tokens short: three of a's 10-token reservations, the newest first.
    const queue = queueOf('aaaaaa');
    expect(queuePlacesFor('b', 30, queue, { freePlaces: 5, freeTokens: 5 })?.map((g) => g.at)).toEqual([5, 4, 3]);
    // More than a's share could give (it must keep at least 2 to b's 1): refused, and nothing taken.
    expect(queuePlacesFor('b', 100, queue, { freePlaces: 5, freeTokens: 5 })).toBeNull();
    expect(queue).toHaveLength(6);
  });

  it('take from the tenants in turn as their counts even out', () => {
    const given = queuePlacesFor('z', 40, queueOf('aaaabbbbb'), { freePlaces: 0, freeTokens: 0 });
    // b (5), then a or b at 4 each, then the other: never one tenant drained while another keeps more.
    expect(given?.map((g) => g.tenant).sort()).toEqual(['a', 'b', 'b', 'a'].sort());
  });
});
