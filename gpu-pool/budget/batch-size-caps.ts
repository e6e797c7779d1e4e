/**
 * The operator's cap on draft nodes per request, by how many generations run
 * in the step (`--speculative-config`: num_speculative_tokens,
 * max_tree_nodes_by_batch_size, disable_by_batch_size). The budget still
 * chooses the tree sizes; this only bounds them, for operators who measured
 * their own hardware and want speculation smaller, or off, from some load.
 */
export interface BatchSizeCapEntry {
  /** From this many running generations... */
  fromBatchSize: number;
  /** ...at most this many draft nodes per request (0: no drafting). */
  maxTreeNodes: number;
}

export class BatchSizeCaps {
  /** Ascending by batch size; the first covers batch size 1. */
  readonly entries: readonly BatchSizeCapEntry[];

  /**
   * `table` maps a batch size to the cap from that size up (below its
   * smallest key: `maxTreeNodes`); `disableFrom` turns drafting off from that
   * batch size. No cap exceeds `maxTreeNodes`.
   */
  constructor(
    readonly maxTreeNodes: number,
    table: Readonly<Record<string, number>> = {},
    disableFrom: number | null = null,
  ) {
    const points = new Map<number, number>([[1, maxTreeNodes]]);
    for (const [size, cap] of Object.entries(table)) {
      const from = Number(size);
      if (!Number.isInteger(from) || from < 1) throw new RangeError(`batch size must be a positive integer, not "${size}"`);
      if (!Number.isInteger(cap) || cap < 0) throw new RangeError(`cap at batch size ${from} must be a non-negative integer, not ${cap}`);
      if (cap > maxTreeNodes) throw new RangeError(`cap at batch size ${from} (${cap}) is more than the most draft nodes per request (${maxTreeNodes})`);
      points.set(from, cap);
    }
    if (disableFrom !== null) {
      if (!Number.isInteger(disableFrom) || disableFrom < 1) throw new RangeError(`disable batch size must be a positive integer, not ${disableFrom}`);
      for (const from of points.keys()) if (from >= disableFrom) points.delete(from);
      points.set(disableFrom, 0);
    }
    this.entries = [...points].sort((a, b) => a[0] - b[0]).map(([fromBatchSize, cap]) => ({ fromBatchSize, maxTreeNodes: cap }));
  }

  /** Most draft nodes per request in a step of `rows` generations. */
  capFor(rows: number): number {
    const e = this.entries;
    let cap = e[0].maxTreeNodes;
    for (let i = 1; i < e.length && e[i].fromBatchSize <= rows; i++) cap = e[i].maxTreeNodes;
    return cap;
  }
}
