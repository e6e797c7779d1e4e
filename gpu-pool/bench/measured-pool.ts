/**
 * Which pool a bench-serve run measured, from its /v1/info: the model and the
 * files it came of, where its passes ran, its datastore and its admission
 * limits. A run against the wrong pool (another one left on the port, started
 * with other limits) read like any other until its failures gave it away
 * (review h192): the report says what it ran against.
 */
import { modelIdentityDetails, type PoolInfo } from '../../shared/protocol';

export interface MeasuredPool {
  url: string;
  model: {
    name: string;
    contextLength: number;
    /** The checkpoint's SHA-256 (hex); absent from pools that do not say it. */
    sha256?: string;
  };
  tokenizer: { format: PoolInfo['tokenizer']['format']; sha256: string };
  /** onnxruntime's execution provider (`cpu`, `cuda`, `webgpu`); absent from pools that do not say it. */
  executionProvider?: string;
  /** The pool's global datastore (`tokens` 0 where it has none) and whether the run's requests asked for it (`--no-datastore`). */
  datastore: { enabled: boolean; tokens: number; used: boolean };
  /** The pool's admission limits, as its /v1/info gives them. */
  limits: PoolInfo['limits'];
}

export function measuredPool(url: string, info: PoolInfo, useDatastore: boolean): MeasuredPool {
  return {
    url,
    model: { name: info.model.name, contextLength: info.model.contextLength, ...(info.model.sha256 ? { sha256: info.model.sha256 } : {}) },
    tokenizer: { format: info.tokenizer.format, sha256: info.tokenizer.sha256 },
    ...(info.runtime ? { executionProvider: info.runtime.executionProvider } : {}),
    datastore: { enabled: info.datastore.enabled, tokens: info.datastore.tokens, used: info.datastore.enabled && useDatastore },
    limits: { ...info.limits },
  };
}

/** The report's line about the pool: `pool URL: MODEL (context, tokenizer and weights hashes), provider; datastore; limits as the pool's flags`. */
export function describeMeasuredPool(pool: MeasuredPool): string {
  // As the pool's model_mismatch answer writes them.
  const files = modelIdentityDetails({ name: pool.model.name, contextLength: pool.model.contextLength, tokenizerSha256: pool.tokenizer.sha256, ...(pool.model.sha256 ? { sha256: pool.model.sha256 } : {}) });
  const datastore = !pool.datastore.enabled
    ? 'no datastore'
    : `a datastore of ${pool.datastore.tokens.toLocaleString('en-US')} tokens${pool.datastore.used ? '' : ', not used (--no-datastore)'}`;
  // As the pool's flags name them: what a reader compares with the command that started the pool.
  const { maxActive, maxQueued, maxTotalTokens, prefillChunk, tenantReserve, preempt } = pool.limits;
  const limits = `--max-active ${maxActive} --max-queued ${maxQueued} --max-total-tokens ${maxTotalTokens}${prefillChunk === undefined ? '' : ` --prefill-chunk ${prefillChunk}`}${tenantReserve === undefined ? '' : ` --tenant-reserve ${tenantReserve}`}${preempt === undefined ? '' : preempt ? ' --preempt' : ' --no-preempt'}`;
  return `pool ${pool.url}: ${pool.model.name} (${files})${pool.executionProvider ? ` on ${pool.executionProvider}` : ''}; ${datastore}; ${limits}`;
}
