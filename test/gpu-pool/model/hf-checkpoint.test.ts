// A Hugging Face directory (permuted q/k, config.json, safetensors) written
// from stories260K's weights loads to the same model and generates the same tokens.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../../gpu-pool/model/load-model';
import { declaredChatTemplate, writeHfCheckpoint } from '../../../gpu-pool/model/hf-checkpoint';
import { readSafetensors, readSafetensorsFile, toFloat32, writeSafetensors } from '../../../gpu-pool/model/safetensors';
import { createHash } from 'node:crypto';
import { ModelRunner } from '../../../gpu-pool/runtime/model-runner';
import { generate } from '../../../gpu-pool/runtime/generate';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sssd-hf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('Hugging Face checkpoints', () => {
  it('load from a directory written in HF layout and generate the same tokens as the .bin', async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const dir = path.join(tmp, 'stories260K-hf');
    await writeHfCheckpoint(dir, bin.config, bin.weights);
    // Tokenizer travels with the model, as in HF repositories.
    const tokJson = path.resolve('shared/tokenizer/tokenizer-json.ts');
    if (existsSync(tokJson)) {
      const { llama2cToTokenizerJson } = await import('../../../shared/tokenizer/tokenizer-json');
      const { parseLlama2cTokenizer } = await import('../../../shared/tokenizer/llama2c-tokenizer');
      const vocab = parseLlama2cTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)));
      writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(llama2cToTokenizerJson(vocab)));
    }

    // The stored q rows really are in HF's rotate-halves order, not llama2.c's.
    const st = readSafetensors(new Uint8Array(readFileSync(path.join(dir, 'model.safetensors'))), 'model.safetensors');
    const hfWq = toFloat32(st.get('model.layers.0.self_attn.q_proj.weight')!, 'x');
    // head 0, pair 0: llama2.c rows (0, 1) are HF rows (0, hd/2 = 4).
    const row = (w: Float32Array, r: number) => Array.from(w.subarray(r * 64, (r + 1) * 64));
    expect(row(hfWq, 4)).toEqual(row(bin.weights.layers[0].wq, 1));
    expect(row(hfWq, 1)).not.toEqual(row(bin.weights.layers[0].wq, 1));

    const hf = await loadModel(dir);
    expect(hf.config).toMatchObject({ dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, contextLength: 512, eosIds: [1], bosId: 1 });
    expect(hf.sha256).not.toBe(bin.sha256);
    expect(Array.from(hf.weights.layers[3].wk)).toEqual(Array.from(bin.weights.layers[3].wk));
    expect(hf.weights.classifier).toBe(hf.weights.tokenEmbedding);

    const fixture = JSON.parse(readFileSync(models.stories260K.fixtures, 'utf8').split('\n')[2]) as { prompt_ids: number[]; output_ids: number[] };
    const runner = await ModelRunner.create(hf, { cacheDir: path.join(tmp, 'graphs') });
    const [result] = await generate(runner, [{ promptIds: fixture.prompt_ids, maxTokens: fixture.output_ids.length }]);
    expect(result.outputIds).toEqual(fixture.output_ids);
    await runner.dispose();
  });

  it('read F16 and BF16 tensors, shards and an untied lm_head', async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const dir = path.join(tmp, 'sharded');
    await writeHfCheckpoint(dir, bin.config, { ...bin.weights, classifier: bin.weights.tokenEmbedding.map((x) => x * 0.5) });
    // Split the single file into two shards with an index.
    const all = readSafetensors(new Uint8Array(readFileSync(path.join(dir, 'model.safetensors'))), 'm');
    rmSync(path.join(dir, 'model.safetensors'));
    const names = [...all.keys()];
    const shardOf = (i: number) => (i < names.length / 2 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors');
    for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      const tensors = names.filter((_, i) => shardOf(i) === shard).map((n) => ({ name: n, shape: all.get(n)!.shape, data: toFloat32(all.get(n)!, n) }));
      writeFileSync(path.join(dir, shard), writeSafetensors(tensors));
    }
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: Object.fromEntries(names.map((n, i) => [n, shardOf(i)])) }));
    const hf = await loadModel(dir);
    expect(hf.weights.classifier).not.toBe(hf.weights.tokenEmbedding);
    expect(hf.weights.classifier[10]).toBeCloseTo(bin.weights.tokenEmbedding[10] * 0.5, 7);

    // Half-precision decoding: 1.0, -2.0, 0.5 as F16 and as BF16.
    const header = (dtype: string) => JSON.stringify({ t: { dtype, shape: [3], data_offsets: [0, 6] } });
    for (const [dtype, words] of [['F16', [0x3c00, 0xc000, 0x3800]], ['BF16', [0x3f80, 0xc000, 0x3f00]]] as const) {
      const h = new TextEncoder().encode(header(dtype));
      const bytes = new Uint8Array(8 + h.length + 6);
      const view = new DataView(bytes.buffer);
      view.setBigUint64(0, BigInt(h.length), true);
      bytes.set(h, 8);
      words.forEach((w, i) => view.setUint16(8 + h.length + 2 * i, w, true));
      expect(Array.from(toFloat32(readSafetensors(bytes, dtype).get('t')!, dtype))).toEqual([1, -2, 0.5]);
    }
  });

  it('explain what is wrong with a broken directory', async () => {
    const dir = path.join(tmp, 'broken');
    await writeHfCheckpoint(dir, (await loadModel(models.stories260K.checkpoint)).config, (await loadModel(models.stories260K.checkpoint)).weights);
    const bytes = readFileSync(path.join(dir, 'model.safetensors'));
    writeFileSync(path.join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length - 1000));
    await expect(loadModel(dir)).rejects.toThrow(/truncated/);
    rmSync(path.join(dir, 'config.json'));
    await expect(loadModel(dir)).rejects.toThrow(/no config\.json/);
  });

  it("refuse what Llama's forward pass would answer wrong, rather than load it: other architectures, scaled RoPE, no end token", async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const dir = path.join(tmp, 'variants');
    await writeHfCheckpoint(dir, bin.config, bin.weights);
    const base = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const withConfig = async (change: Record<string, unknown>, drop: string[] = []): Promise<unknown> => {
      const cfg: Record<string, unknown> = { ...base, ...change };
      for (const key of drop) delete cfg[key];
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
      return loadModel(dir).then((m) => m.config, (err: unknown) => err);
    };
    expect(String(await withConfig({ model_type: 'qwen3' }))).toMatch(/model_type "qwen3" is not supported/);
    expect(String(await withConfig({ hidden_act: 'gelu_pytorch_tanh' }))).toMatch(/hidden_act "gelu_pytorch_tanh" is not supported/);
    expect(String(await withConfig({ sliding_window: 4096 }))).toMatch(/sliding-window attention is not supported/);
    // Newer transformers keep theta and the scaling in rope_parameters: read there, and a scaled one refused.
    expect(String(await withConfig({ rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8 } }, ['rope_theta']))).toMatch(/rope_type "llama3" is not supported/);
    expect(await withConfig({ rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, ['rope_theta'])).toMatchObject({ ropeTheta: 500000 });
    expect(String(await withConfig({ eos_token_id: null }))).toMatch(/eos_token_id must be a token id/);
    expect(await withConfig({ sliding_window: null, hidden_act: 'silu', model_type: 'llama' })).toMatchObject({ nLayers: bin.config.nLayers });
    // A config naming no architecture, or quantized weights, is refused by name; RoPE's default written out is RoPE.
    expect(String(await withConfig({}, ['model_type']))).toMatch(/names no model_type/);
    expect(String(await withConfig({ quantization_config: { quant_method: 'awq', bits: 4 } }))).toMatch(/quantized checkpoints are not supported \(quant_method "awq"\)/);
    expect(String(await withConfig({ rope_scaling: { type: 'linear', factor: 2 } }))).toMatch(/rope_scaling "linear" is not supported/);
    expect(await withConfig({ rope_scaling: { rope_type: 'default' } })).toMatchObject({ nLayers: bin.config.nLayers });
  });

  it('refuse a config whose values would crash the pool or answer wrong, each with a one-line reason', async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const dir = path.join(tmp, 'values');
    await writeHfCheckpoint(dir, bin.config, bin.weights);
    const base = readFileSync(path.join(dir, 'config.json'), 'utf8');
    const withConfig = async (text: string): Promise<string> => {
      writeFileSync(path.join(dir, 'config.json'), text);
      return loadModel(dir).then(() => 'loaded', (err: unknown) => String(err));
    };
    const changed = (change: Record<string, unknown>): string => JSON.stringify({ ...(JSON.parse(base) as Record<string, unknown>), ...change });
    expect(await withConfig('null')).toMatch(/not a Hugging Face config \(a JSON object\)/);
    expect(await withConfig('42')).toMatch(/not a Hugging Face config/);
    expect(await withConfig(changed({ max_position_embeddings: 1e9 }))).toMatch(/max_position_embeddings 1000000000 is more than this server takes/);
    expect(await withConfig(changed({ num_key_value_heads: '4' }))).toMatch(/lacks a positive integer "num_key_value_heads"/);
    expect(await withConfig(changed({ num_key_value_heads: -4 }))).toMatch(/lacks a positive integer "num_key_value_heads"/);
    for (const eps of ['abc', -1, 1e30]) expect(await withConfig(changed({ rms_norm_eps: eps }))).toMatch(/rms_norm_eps must be a positive number below 1/);
    expect(await withConfig(changed({ bos_token_id: 99_999 }))).toMatch(/bos_token_id 99999 is not a token id of the vocabulary \(0-511\)/);
    expect(await withConfig(changed({ bos_token_id: '1' }))).toMatch(/bos_token_id "1" is not a token id/);
    expect(await withConfig(changed({ eos_token_id: [2, 99_999] }))).toMatch(/eos_token_id 99999 is not a token id/);
    writeFileSync(path.join(dir, 'config.json'), base);
    // A sharded folder's index: an object naming plain file names beside it, and weights that are files.
    const index = path.join(dir, 'model.safetensors.index.json');
    const withIndex = async (text: string): Promise<string> => {
      writeFileSync(index, text);
      return loadModel(dir).then(() => 'loaded', (err: unknown) => String(err));
    };
    expect(await withIndex('null')).toMatch(/no weight_map object/);
    expect(await withIndex('{"weight_map":{"a":5}}')).toMatch(/weight_map names 5, not a file name/);
    expect(await withIndex('{"weight_map":{"a":"../elsewhere/model.safetensors"}}')).toMatch(/not a file name in the model's folder/);
    rmSync(index);
    const weights = path.join(dir, 'model.safetensors');
    rmSync(weights);
    mkdirSync(weights);
    expect(await loadModel(dir).then(() => 'loaded', (err: unknown) => String(err))).toMatch(/model\.safetensors is a folder; the weights must be a file/);
  });

  it('refuse a safetensors entry whose data would start before the data (in the header)', () => {
    const file = writeSafetensors([{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }]);
    const headerLen = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(Buffer.from(file.subarray(8, 8 + headerLen)).toString('utf8')) as Record<string, { data_offsets: number[] }>;
    header.w.data_offsets = [-8, 0];
    const text = Buffer.from(JSON.stringify(header).padEnd(headerLen, ' '));
    const forged = Buffer.concat([file.subarray(0, 8), text, file.subarray(8 + headerLen)]);
    expect(() => readSafetensors(new Uint8Array(forged), 'forged')).toThrow(/inconsistent header entry/);
  });

  it('read weights files in chunks, each tensor whole whatever the chunks cut (files past 2 GiB could not be read at once), and checksum every byte', async () => {
    const bin = await loadModel(models.stories260K.checkpoint);
    const dir = path.join(tmp, 'chunked');
    await writeHfCheckpoint(dir, bin.config, bin.weights);
    const file = path.join(dir, 'model.safetensors');
    const whole = new Uint8Array(readFileSync(file));
    const inMemory = readSafetensors(whole, 'm');
    for (const chunkBytes of [7, 4096, 1 << 26]) {
      const seen = createHash('sha256');
      const read = await readSafetensorsFile(file, 'm', (chunk) => seen.update(chunk), chunkBytes);
      expect([...read.keys()].sort()).toEqual([...inMemory.keys()].sort());
      for (const [key, entry] of inMemory) expect(Buffer.from(read.get(key)!.data).equals(Buffer.from(entry.data)), key).toBe(true);
      expect(seen.digest('hex')).toBe(createHash('sha256').update(whole).digest('hex'));
    }
  });

  it("tell the chat template a folder declares (the pool renders its own, and says so at start)", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-chat-'));
    try {
      expect(await declaredChatTemplate(dir)).toBeNull();
      writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
      expect(await declaredChatTemplate(dir)).toBeNull();
      const jinja = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}";
      writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: jinja }));
      expect(await declaredChatTemplate(dir)).toEqual({ file: path.join(dir, 'tokenizer_config.json'), template: jinja });
      writeFileSync(path.join(dir, 'tokenizer_config.json'), '{ not json');
      expect(await declaredChatTemplate(dir)).toBeNull();
      // Where newer transformers save it, and the file the pool's warning names.
      writeFileSync(path.join(dir, 'chat_template.jinja'), jinja);
      expect(await declaredChatTemplate(dir)).toEqual({ file: path.join(dir, 'chat_template.jinja'), template: jinja });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('name a dtype it cannot read (FP8, unsigned) rather than call the header inconsistent', () => {
    for (const dtype of ['F8_E4M3', 'U16']) {
      const h = new TextEncoder().encode(JSON.stringify({ t: { dtype, shape: [2], data_offsets: [0, 2] } }));
      const bytes = new Uint8Array(8 + h.length + 2);
      new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
      bytes.set(h, 8);
      expect(() => readSafetensors(bytes, 'fp8')).toThrow(`tensor t has dtype ${dtype}, unsupported (F32, F16, BF16 are supported)`);
    }
  });
});
