/** `bytes` cut into chunks at the given offsets (ascending): a body as a network may deliver it. */
export function splitBytes(bytes: Uint8Array, at: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    out.push(bytes.subarray(from, to));
    from = to;
  }
  return out;
}
