/**
 * The node arrays of finished requests' context tries, handed to the next
 * requests' tries (CountTrie with a pool; a SizeClassPool weighed in bytes,
 * shared/memory/size-class-pool.ts).
 *
 * Why: a request's context trie is sized for the length it may reach (16
 * nodes a token: ~150 KB with its hash table on stories260K's 271-token
 * requests, ~20 MB for a 32K-token prompt). A 32K-token prompt's drafter,
 * built and drafting once, takes 29-32 ms on fresh memory and 1.5 ms on
 * reused arrays (`sssd bench-drafting` prints both). Reused arrays keep old
 * nodes: a trie only reads nodes it has made since, and its hash table is
 * emptied on take.
 */
import { SizeClassPool, sizeClass } from '../memory/size-class-pool';

export interface TrieStorage {
  tokens: Int32Array;
  counts: Uint32Array;
  parents: Int32Array;
  firstChild: Int32Array;
  nextSibling: Int32Array;
  /** Open-addressing table, a power of two at least twice the node capacity; -1 = empty. */
  slots: Int32Array;
}

export function trieSlotCount(nodes: number): number {
  let s = 16;
  while (s < nodes * 2) s *= 2;
  return s;
}

/** Bytes of a storage of `nodes` nodes (five 4-byte arrays and the hash table). */
export function trieStorageBytes(nodes: number): number {
  return 4 * (5 * nodes + trieSlotCount(nodes));
}

/** The size class `nodes` rounds up to (at most a quarter more from 64 on), at most `max`. */
export function trieCapacityClass(nodes: number, max: number): number {
  return sizeClass(nodes, max);
}

export function newTrieStorage(nodes: number): TrieStorage {
  return {
    tokens: new Int32Array(nodes),
    counts: new Uint32Array(nodes),
    parents: new Int32Array(nodes),
    firstChild: new Int32Array(nodes),
    nextSibling: new Int32Array(nodes),
    slots: new Int32Array(trieSlotCount(nodes)).fill(-1),
  };
}

export type TrieStoragePool = SizeClassPool<TrieStorage>;

/** A pool of trie storage keeping at most `maxBytes`. */
export function trieStoragePool(maxBytes: number): TrieStoragePool {
  return new SizeClassPool<TrieStorage>({ weightOf: trieStorageBytes, maxWeight: maxBytes, make: newTrieStorage, reuse: (s) => s.slots.fill(-1) });
}

/** The process's pool for requests' context tries (64 MiB kept at most: three 32K-token prompts' tries, or hundreds of short ones). */
export const contextTriePool = trieStoragePool(64 * 2 ** 20);
