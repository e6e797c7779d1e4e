import { describe, expect, it } from 'vitest';
import { ChunkPacker } from '../../../gpu-pool/datastore/chunk-packer';

const pack = (docs: number[][], chunkTokens: number, start: number[] | null = null): number[][] => {
  const packer = new ChunkPacker(1, chunkTokens, start ? Int32Array.from(start) : null);
  for (const d of docs) packer.add(d);
  return packer.finish().map((c) => Array.from(c));
};

describe('ChunkPacker', () => {
  it('starts every document with one separator and never doubles it between documents', () => {
    expect(pack([[5, 6], [1, 7, 8, 1], [1, 1, 9]], 100)).toEqual([[1, 5, 6, 1, 7, 8, 1, 9]]);
  });

  it('skips empty documents and yields nothing for no documents', () => {
    expect(pack([], 100)).toEqual([]);
    expect(pack([[], [1], [1, 1]], 100)).toEqual([]);
  });

  it('starts a new chunk (with its own separator) when a document would not fit', () => {
    expect(pack([[5, 6, 7], [8, 9, 10]], 6)).toEqual([[1, 5, 6, 7], [1, 8, 9, 10]]);
  });

  it('splits a document longer than a chunk', () => {
    expect(pack([[2, 3, 4, 5, 6, 7, 8]], 3)).toEqual([[1, 2, 3], [4, 5, 6], [7, 8]]);
  });

  it('extends a given last chunk, which always comes first', () => {
    expect(pack([[7, 8]], 10, [1, 5, 6])).toEqual([[1, 5, 6, 1, 7, 8]]);
    expect(pack([[7, 8]], 4, [1, 5, 6])).toEqual([[1, 5, 6], [1, 7, 8]]);
    expect(pack([], 4, [1, 5, 6])).toEqual([[1, 5, 6]]);
  });
});
