/**
 * Which user a `/v1/user-cache` request names (`DELETE` forgets them, `GET`
 * shows what is kept of them): `?user=NAME`, or a JSON body
 * `{"user": NAME}` (a name no URL can carry: one with a lone surrogate, which
 * the completion routes give a cache of its own), or neither for the key's
 * unnamed user. Anything else is a 400 rather than a guess: a misspelt
 * parameter, or a body the route did not read, silently forgot the key's
 * unnamed user (shared by all its requests without `user`) instead.
 */
import { z } from 'zod';
import { ApiError } from './api-error';
import { clipped, MAX_USER_LENGTH } from './request-schema';

const bodySchema = z.object({ user: z.string().max(MAX_USER_LENGTH).nullable() }).strict();

function refused(message: string, param: string | null = 'user'): ApiError {
  return new ApiError(400, message, 'invalid_request_error', 'invalid_value', param);
}

/** The name (null: the unnamed user) from the request's query string and body text ('' when none). */
export function userCacheUser(search: string, bodyText: string): string | null {
  const pairs = search.replace(/^\?/, '').split('&').filter((pair) => pair.length > 0);
  let fromQuery: string | null | undefined;
  for (const pair of pairs) {
    const [rawName, ...rest] = pair.split('=');
    const name = decodeStrictly(rawName, null);
    if (name !== 'user') throw refused(`Unknown query parameter ${JSON.stringify(clipped(name, 100))}: the only one is user.`, clipped(name, 100));
    if (fromQuery !== undefined) throw refused('user is given twice.');
    fromQuery = decodeStrictly(rest.join('='));
  }
  let fromBody: string | null | undefined;
  if (bodyText.trim().length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(bodyText);
    } catch {
      throw new ApiError(400, 'The request body is not valid JSON.', 'invalid_request_error', 'invalid_json');
    }
    const result = bodySchema.safeParse(parsed);
    if (!result.success) throw refused(`The body is {"user": NAME} (a string of at most ${MAX_USER_LENGTH} characters, or null for the unnamed user), and nothing else.`);
    fromBody = result.data.user;
  }
  if (fromQuery !== undefined && fromBody !== undefined) throw refused('user is given both in the query and in the body: send one.');
  const user = fromBody !== undefined ? fromBody : (fromQuery ?? null);
  // Characters as the completion routes count them (zod's max: code points), so every name they took can be forgotten.
  if (user !== null && user.length > MAX_USER_LENGTH && [...user].length > MAX_USER_LENGTH) throw refused(`user is at most ${MAX_USER_LENGTH} characters.`);
  // As the completion routes: an empty name is the unnamed user.
  return user === '' ? null : user;
}

/** Form decoding ('+' is a space), refusing what is not percent-encoded UTF-8 (it was taken literally, naming another user). */
function decodeStrictly(raw: string, param: string | null = 'user'): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    throw refused(`${JSON.stringify(clipped(raw, 100))} is not percent-encoded UTF-8.`, param);
  }
}
