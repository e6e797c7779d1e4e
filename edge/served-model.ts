/**
 * The served model's info and tokenizer, fetched from a pool once per isolate
 * (GET /v1/info, then the tokenizer file it names). All pools of one edge serve
 * the same model; a failed load is retried on the next request.
 */
import type { PoolInfo } from '../shared/protocol';
import { loadTokenizer } from '../shared/tokenizer/load-tokenizer';
import type { Tokenizer } from '../shared/tokenizer/tokenizer';
import { ApiError } from './api-error';
import type { PoolPicker } from './pool-picker';

export interface ServedModel {
  info: PoolInfo;
  tokenizer: Tokenizer;
  /** Ids that end a generation and print nothing. */
  eosIds: ReadonlySet<number>;
}

let loading: Promise<ServedModel> | null = null;

async function load(picker: PoolPicker): Promise<ServedModel> {
  let lastError: unknown = null;
  for (const client of await picker.ordered()) {
    try {
      const info = await client.info();
      const bytes = await client.tokenizerBytes(info.tokenizer.path);
      const tokenizer = loadTokenizer(bytes, info.tokenizer.format);
      return { info, tokenizer, eosIds: new Set([...info.model.eosIds, ...tokenizer.eosIds]) };
    } catch (err) {
      lastError = err;
      picker.markFailed(client.baseUrl);
    }
  }
  console.error('edge: no pool answered /v1/info', lastError);
  throw new ApiError(503, 'No inference pool is reachable; retry shortly.', 'service_unavailable', 'pool_unavailable', null, 2);
}

export function servedModel(picker: PoolPicker): Promise<ServedModel> {
  if (!loading) {
    loading = load(picker);
    loading.catch(() => {
      loading = null;
    });
  }
  return loading;
}
