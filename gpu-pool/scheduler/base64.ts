/** Strict base64 decoding for binary payloads in JSON bodies (tries): null when malformed. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function decodeBase64(s: string): Uint8Array | null {
  if (s.length % 4 !== 0 || !BASE64.test(s)) return null;
  const buf = Buffer.from(s, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
