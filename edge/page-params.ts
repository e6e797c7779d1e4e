/**
 * OpenAI's cursor paging of a list route's query (`order`, `limit`, `after`),
 * checked as OpenAI checks them, and a page cut from a list held whole (a
 * response's input items, a stored chat completion's messages).
 */
import { badRequest, type ApiError } from './api-error';
import { clipped } from './request-schema';

export interface PageParams {
  order: 'asc' | 'desc';
  /** 1 to 100 (20 where not given). */
  limit: number;
  /** The id of the last item of the page before; null: from the first. */
  after: string | null;
}

/** A list page as OpenAI's routes answer it (the SDK's CursorPage). */
export interface ListPage<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/** The query's paging, each of its names given once at most; 400s name the one at fault. */
export function pageParams(query: URLSearchParams, defaultOrder: 'asc' | 'desc'): PageParams {
  // One of each (a repeat took the first silently, review h112).
  for (const name of ['order', 'limit', 'after']) {
    if (query.getAll(name).length > 1) throw badRequest(`${name} is given ${query.getAll(name).length} times; give it once`, name, 'invalid_value');
  }
  const order = query.get('order') ?? defaultOrder;
  if (order !== 'asc' && order !== 'desc') throw badRequest(`order must be "asc" or "desc", not '${clipped(order, 20)}'`, 'order', 'invalid_value');
  const limitText = query.get('limit');
  // Digits only: Number() took "1e1" and " 1".
  const limit = limitText === null ? 20 : /^[0-9]{1,3}$/.test(limitText) ? Number(limitText) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('limit must be an integer from 1 to 100', 'limit', 'invalid_value');
  const after = query.get('after');
  // No item has an empty id: said as such at once, not after reading a whole index for it (the stored chat completions').
  if (after === '') throw badRequest('after must be the id of the last item of the page before (or be left out), not be empty', 'after', 'invalid_value');
  return { order, limit, after };
}

/** The page of `items` (in their stored order, reversed for `desc`) after `after`; `notFound` where no item has that id. */
export function pageOf<T extends { id: string }>(items: readonly T[], params: PageParams, notFound: (after: string) => ApiError): { page: T[]; hasMore: boolean } {
  const ordered = params.order === 'asc' ? items : [...items].reverse();
  let start = 0;
  if (params.after !== null) {
    const at = ordered.findIndex((item) => item.id === params.after);
    if (at < 0) throw notFound(params.after);
    start = at + 1;
  }
  return { page: ordered.slice(start, start + params.limit), hasMore: start + params.limit < ordered.length };
}
