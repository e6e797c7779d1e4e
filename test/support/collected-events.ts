import type { PoolEvent } from '../../shared/protocol';

/** A generation's events as a scheduler sends them to its sink, and when they ended. */
export interface CollectedEvents {
  events: PoolEvent[];
  /** Resolves with the events once the sink is ended. */
  done: Promise<PoolEvent[]>;
  /** The scheduler's step count when its start event came (null: not yet). */
  startedAtStep: number | null;
  sink: { send(e: PoolEvent): void; end(): void };
}

/** A sink that keeps a generation's events; `steps` reads the scheduler's step count, for startedAtStep. */
export function collect(steps: () => number = () => 0): CollectedEvents {
  const events: PoolEvent[] = [];
  let resolve!: (e: PoolEvent[]) => void;
  const done = new Promise<PoolEvent[]>((r) => (resolve = r));
  const c: CollectedEvents = {
    events,
    done,
    startedAtStep: null,
    sink: {
      send: (e) => {
        if (e.type === 'start') c.startedAtStep = steps();
        events.push(e);
      },
      end: () => resolve(events),
    },
  };
  return c;
}

/** The ids a generation's events emitted, in order. */
export function tokensOf(events: PoolEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'tokens' ? e.ids : []));
}
