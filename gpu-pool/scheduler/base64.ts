/** Strict base64 decoding for binary payloads in JSON bodies (tries): null when malformed. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** What a payload that decodeBase64 refuses should have been (Python's encodebytes adds line breaks, base64url and unpadded text differ). */
export const NOT_BASE64 = 'not valid base64: expected standard base64 (A-Z a-z 0-9 + /) padded with = to a multiple of 4 characters, with no line breaks or other whitespace, not base64url';

export function decodeBase64(s: string): Uint8Array | null {
  if (s.length % 4 !== 0 || !BASE64.test(s)) return null;
  const buf = Buffer.from(s, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
