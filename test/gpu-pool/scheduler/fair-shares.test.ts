import { describe, expect, it } from 'vitest';
import { FairShares } from '../../../gpu-pool/scheduler/fair-shares';

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
