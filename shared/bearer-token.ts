/**
 * What a bearer token may hold: printable ASCII without spaces (RFC 6750's
 * token is narrower still). A header carries other characters differently
 * from client to client (curl sends UTF-8, Node's fetch Latin-1, and refuses
 * anything past U+00FF), so a pool with such a token refuses some edges and
 * no edge could send it at all.
 */
export function bearerTokenProblem(name: string, token: string): string | null {
  return /[^\x21-\x7e]/.test(token) ? `${name} holds a space or a character outside printable ASCII, which HTTP clients send differently or not at all: use letters, digits and punctuation` : null;
}
