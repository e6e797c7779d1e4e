// shared/tokenizer must run unchanged in workerd: bundle a tiny Worker that
// loads both tokenizer formats and run it in the real workerd runtime
// (Miniflare, as wrangler dev does).
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama2cTokenizer } from '../../../shared/tokenizer/llama2c-tokenizer';
import { repoRoot } from '../../support/shared-data';
import { tokenizerBytes } from './tokenizer-fixtures';

const WORKER = `
import { loadTokenizer } from './shared/tokenizer/load-tokenizer';
import { llama2cToTokenizerJson } from './shared/tokenizer/tokenizer-json';
export default {
  async fetch(request) {
    const { text } = Object.fromEntries(new URL(request.url).searchParams);
    const llama2c = loadTokenizer(new Uint8Array(await request.arrayBuffer()));
    const json = new TextEncoder().encode(JSON.stringify(llama2cToTokenizerJson(llama2c.vocabulary)));
    const hf = loadTokenizer(json);
    const ids = llama2c.encode(text);
    const decoder = hf.createDecoder();
    let streamed = '';
    for (const id of ids) streamed += decoder.push(id);
    streamed += decoder.flush();
    return Response.json({ ids, hfIds: hf.encode(text), decoded: llama2c.decode(ids), streamed });
  },
};`;

describe('tokenizers in workerd', () => {
  let mf: Miniflare;
  beforeAll(async () => {
    const bundle = await build({
      stdin: { contents: WORKER, resolveDir: repoRoot, loader: 'js' },
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      conditions: ['workerd', 'worker', 'browser'],
      write: false,
      absWorkingDir: path.resolve(repoRoot),
    });
    mf = new Miniflare({ modules: true, script: bundle.outputFiles[0].text, compatibilityDate: '2025-01-01' });
  });
  afterAll(async () => {
    await mf?.dispose();
  });

  it('encodes, decodes and stream-decodes like Node, for llama2.c and tokenizer.json', async () => {
    const text = 'Once upon a time, naïve 😀 “hi”\n日本';
    const res = await mf.dispatchFetch(`http://worker/?text=${encodeURIComponent(text)}`, {
      method: 'POST',
      body: tokenizerBytes('stories260K'),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ids: number[]; hfIds: number[]; decoded: string; streamed: string };
    const node = Llama2cTokenizer.fromBytes(tokenizerBytes('stories260K'));
    expect(body.ids).toEqual(node.encode(text));
    expect(body.hfIds).toEqual(body.ids);
    expect(body.decoded).toBe(text);
    expect(body.streamed).toBe(text);
  });
});
