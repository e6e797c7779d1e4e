import { ApiError } from '../../edge/api-error';

/** A class of error a check expects: ApiError, SchemaError, Error. */
type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

/**
 * What `run` is refused with: the error it throws, an ApiError unless `kind` names another class. A run that returns,
 * or throws anything else, fails the test: a refusal of the wrong kind is no refusal.
 */
export function refusalOf(run: () => unknown): ApiError;
export function refusalOf<E extends Error>(run: () => unknown, kind: ErrorClass<E>): E;
export function refusalOf(run: () => unknown, kind: ErrorClass<Error> = ApiError): Error {
  try {
    run();
  } catch (err) {
    if (err instanceof kind) return err;
    throw err;
  }
  throw new Error('not refused');
}

/**
 * The ApiError `run` is refused with, or null where it returns: for checks of what is taken beside what is refused.
 * Anything else it throws fails the test.
 */
export function refusalOrNull(run: () => unknown): ApiError | null {
  try {
    run();
    return null;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
}

/** What `reply` is rejected with, as refusalOf: an ApiError; a reply that resolves, or rejects with another kind, fails the test. */
export async function refusalOfAsync(reply: Promise<unknown>): Promise<ApiError> {
  try {
    await reply;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error('not refused');
}
