/**
 * Hugging Face Llama-family directories: config.json + model.safetensors, or
 * shards listed in model.safetensors.index.json. HF stores q/k rows permuted
 * for its "rotate halves" RoPE; we convert them back to llama2.c's adjacent
 * pairs at load (and forward again when writing).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ModelConfig } from './model-config';
import type { LayerWeights, ModelWeights } from './model-weights';
import { unreadableFileMessage } from '../cli/cli-error';
import { ModelLoadError } from './model-load-error';
import { MAX_VOCAB_SIZE } from '../../shared/tokenizer/tokenizer';
import { readSafetensorsFile, toFloat32, writeSafetensors, type SafetensorsEntry } from './safetensors';

interface HfConfig {
  hidden_size?: number;
  intermediate_size?: number;
  num_hidden_layers?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size?: number;
  max_position_embeddings?: number;
  rope_theta?: number;
  rms_norm_eps?: number;
  tie_word_embeddings?: boolean;
  bos_token_id?: number;
  eos_token_id?: number | number[];
  rope_scaling?: unknown;
  quantization_config?: unknown;
  /** Newer transformers: rope_theta and the scaling together. */
  rope_parameters?: { rope_type?: string; rope_theta?: number } & Record<string, unknown>;
  attention_bias?: boolean;
  mlp_bias?: boolean;
  model_type?: string;
  hidden_act?: string;
  sliding_window?: number | null;
}

/**
 * The architectures whose checkpoints are Llama's forward pass exactly (the
 * same tensors, SiLU MLP, RMSNorm, RoPE, full attention). Others that reuse
 * Llama's tensor names (Qwen3's q/k norms, Gemma's norm and scale, Mistral's
 * sliding window) would load and answer wrong: they are refused by name.
 */
const LLAMA_MODEL_TYPES = new Set(['llama']);

/**
 * Moves q/k rows between RoPE conventions. llama2.c row (h, 2i + j) is HF row
 * (h, j * hd/2 + i): HF's export `permute` goes 'toHalves', loading goes 'toPairs'.
 */
function permuteRopeRows(w: Float32Array, nHeads: number, rows: number, cols: number, to: 'toHalves' | 'toPairs'): Float32Array {
  const out = new Float32Array(w.length);
  const hd = rows / nHeads;
  const half = hd / 2;
  for (let h = 0; h < nHeads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const pairs = (h * hd + 2 * i + j) * cols;
        const halves = (h * hd + j * half + i) * cols;
        const [src, dst] = to === 'toHalves' ? [pairs, halves] : [halves, pairs];
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

/** eos_token_id as ids (absent: 2, Llama's </s>); anything but token ids is refused, not read as none. */
function eosIdsOf(eos: unknown, name: string): number[] {
  if (eos === undefined) return [2];
  const ids = Array.isArray(eos) ? eos : [eos];
  if (ids.length === 0 || !ids.every((id) => typeof id === 'number' && Number.isInteger(id) && id >= 0)) {
    throw new ModelLoadError(`${name}: eos_token_id must be a token id or a list of them, not ${JSON.stringify(eos)}`);
  }
  return ids as number[];
}

/** Bounds a config's sizes must keep (a llama2.c header's are the same): past them a table would not fit in memory. */
const MAX_CONTEXT_LENGTH = 1 << 20;

/** A special token's id from config.json: an integer inside the vocabulary (the pool sends it to edges, and starts self-samples with it). */
function tokenIdOf(id: unknown, key: string, vocabSize: number, name: string): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new ModelLoadError(`${name}: ${key} ${JSON.stringify(id)} is not a token id of the vocabulary (0-${vocabSize - 1})`);
  }
  return id;
}

function requirePositiveInt(cfg: HfConfig, key: keyof HfConfig, name: string): number {
  const v = cfg[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelLoadError(`${name}: config.json lacks a positive integer "${key}"`);
  }
  return v;
}

/** Loads a directory; sha256 covers config.json then each weights file, in order. */
export async function loadHfCheckpoint(dir: string): Promise<{ config: ModelConfig; weights: ModelWeights; sha256: string }> {
  const name = path.basename(path.resolve(dir));
  const configPath = path.join(dir, 'config.json');
  if (!existsSync(configPath)) throw new ModelLoadError(`${dir}: not a Hugging Face model directory (no config.json)`);
  const hash = createHash('sha256');
  let cfg: HfConfig;
  const configBytes = await readFile(configPath).catch((err: unknown) => {
    throw new ModelLoadError(unreadableFileMessage('model config', configPath, err));
  });
  try {
    hash.update(configBytes);
    cfg = JSON.parse(configBytes.toString('utf8')) as HfConfig;
  } catch {
    throw new ModelLoadError(`${configPath}: not valid JSON`);
  }
  // `null` or a number is valid JSON too: it crashed on the first field read, with a stack.
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) throw new ModelLoadError(`${configPath}: not a Hugging Face config (a JSON object)`);
  // Named or refused: a config without one says nothing of the architecture its weights need.
  if (cfg.model_type === undefined) throw new ModelLoadError(`${name}: config.json names no model_type (only Llama's forward pass is supported: model_type "llama")`);
  if (!LLAMA_MODEL_TYPES.has(cfg.model_type)) {
    throw new ModelLoadError(`${name}: model_type "${cfg.model_type}" is not supported (only Llama's forward pass: model_type "llama")`);
  }
  if (cfg.quantization_config !== undefined && cfg.quantization_config !== null) {
    const method = (cfg.quantization_config as { quant_method?: unknown }).quant_method;
    throw new ModelLoadError(`${name}: quantized checkpoints are not supported${typeof method === 'string' ? ` (quant_method "${method.slice(0, 40)}")` : ''}: give F32, F16 or BF16 weights`);
  }
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') throw new ModelLoadError(`${name}: hidden_act "${cfg.hidden_act}" is not supported (only silu)`);
  if (cfg.sliding_window !== undefined && cfg.sliding_window !== null) throw new ModelLoadError(`${name}: sliding-window attention is not supported`);
  // Some exports write the default as an object: only a scaling that changes RoPE is refused.
  const scaling = cfg.rope_scaling as { rope_type?: unknown; type?: unknown } | null | undefined;
  if (scaling && (scaling.rope_type ?? scaling.type ?? 'default') !== 'default') {
    throw new ModelLoadError(`${name}: rope_scaling "${String(scaling.rope_type ?? scaling.type)}" is not supported (only default RoPE)`);
  }
  const rope = cfg.rope_parameters;
  if (rope !== undefined && rope !== null && (rope.rope_type ?? 'default') !== 'default') {
    throw new ModelLoadError(`${name}: rope_parameters.rope_type "${String(rope.rope_type)}" is not supported (only default RoPE)`);
  }
  const ropeTheta = rope?.rope_theta ?? cfg.rope_theta ?? 10000;
  if (typeof ropeTheta !== 'number' || !(ropeTheta > 0)) throw new ModelLoadError(`${name}: rope_theta must be a positive number`);
  if (cfg.attention_bias || cfg.mlp_bias) throw new ModelLoadError(`${name}: attention/MLP biases are not supported`);
  const dim = requirePositiveInt(cfg, 'hidden_size', name);
  const hiddenDim = requirePositiveInt(cfg, 'intermediate_size', name);
  const nLayers = requirePositiveInt(cfg, 'num_hidden_layers', name);
  const nHeads = requirePositiveInt(cfg, 'num_attention_heads', name);
  const nKvHeads = cfg.num_key_value_heads === undefined ? nHeads : requirePositiveInt(cfg, 'num_key_value_heads', name);
  const vocabSize = requirePositiveInt(cfg, 'vocab_size', name);
  const contextLength = requirePositiveInt(cfg, 'max_position_embeddings', name);
  // As a llama2.c header's bounds: past them the RoPE tables alone would not fit in memory (1e9 positions crashed).
  if (contextLength > MAX_CONTEXT_LENGTH) throw new ModelLoadError(`${name}: max_position_embeddings ${contextLength} is more than this server takes (${MAX_CONTEXT_LENGTH})`);
  if (vocabSize > MAX_VOCAB_SIZE) throw new ModelLoadError(`${name}: vocab_size ${vocabSize} is more than this server takes (${MAX_VOCAB_SIZE})`);
  const normEps = cfg.rms_norm_eps ?? 1e-6;
  // A norm's epsilon that is not a small positive number gave non-finite logits mid-generation, or wrong text (1e30).
  if (typeof normEps !== 'number' || !(normEps > 0 && normEps < 1)) throw new ModelLoadError(`${name}: rms_norm_eps must be a positive number below 1, not ${JSON.stringify(normEps)}`);
  const headDim = dim / nHeads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0 || nHeads % nKvHeads !== 0) {
    throw new ModelLoadError(`${name}: unsupported head layout (hidden ${dim}, heads ${nHeads}, kv heads ${nKvHeads})`);
  }
  if (cfg.head_dim !== undefined && cfg.head_dim !== headDim) {
    throw new ModelLoadError(`${name}: head_dim ${cfg.head_dim} != hidden_size / num_attention_heads is not supported`);
  }
  const eos = cfg.eos_token_id;
  const config: ModelConfig = {
    name, dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, contextLength,
    ropeTheta,
    normEps,
    bosId: tokenIdOf(cfg.bos_token_id ?? 1, 'bos_token_id', vocabSize, name),
    eosIds: eosIdsOf(eos, name).map((id) => tokenIdOf(id, 'eos_token_id', vocabSize, name)),
  };

  // Shards: the index names each tensor's file; otherwise one model.safetensors.
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  let files: string[];
  if (existsSync(indexPath)) {
    let index: unknown;
    const indexText = await readFile(indexPath, 'utf8').catch((err: unknown) => {
      throw new ModelLoadError(unreadableFileMessage('model index', indexPath, err));
    });
    try {
      index = JSON.parse(indexText);
    } catch {
      throw new ModelLoadError(`${indexPath}: not valid JSON`);
    }
    const weightMap = index !== null && typeof index === 'object' ? (index as { weight_map?: unknown }).weight_map : undefined;
    if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) throw new ModelLoadError(`${indexPath}: no weight_map object (tensor name → file name)`);
    files = [...new Set(Object.values(weightMap))].sort();
    // Files beside the index, by plain name: not a path out of the folder, nor anything but a name.
    const odd = files.find((f) => typeof f !== 'string' || f === '' || f !== path.basename(f) || f === '.' || f === '..');
    if (odd !== undefined) throw new ModelLoadError(`${indexPath}: weight_map names ${JSON.stringify(odd)}, not a file name in the model's folder`);
    if (files.length === 0) throw new ModelLoadError(`${indexPath}: empty weight_map`);
  } else {
    files = ['model.safetensors'];
  }
  const tensors = new Map<string, SafetensorsEntry>();
  for (const f of files) {
    const p = path.join(dir, f);
    if (!existsSync(p)) throw new ModelLoadError(`${name}: missing weights file ${f}`);
    if (statSync(p).isDirectory()) throw new ModelLoadError(`${name}: ${f} is a folder; the weights must be a file`);
    for (const [k, v] of await readSafetensorsFile(p, f, (chunk) => hash.update(chunk))) tensors.set(k, v);
  }

  const biases = [...tensors.keys()].filter((k) => k.endsWith('.bias'));
  if (biases.length > 0) throw new ModelLoadError(`${name}: bias tensors are not supported (${biases[0]})`);
  const kvDim = nKvHeads * headDim;
  const get = (key: string, shape: number[]): Float32Array => {
    const e = tensors.get(key);
    if (!e) throw new ModelLoadError(`${name}: missing tensor ${key}`);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
      throw new ModelLoadError(`${name}: tensor ${key} has shape [${e.shape}], expected [${shape}]`);
    }
    return toFloat32(e, name);
  };
  const layers: LayerWeights[] = [];
  for (let l = 0; l < nLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      attnNorm: get(`${p}input_layernorm.weight`, [dim]),
      wq: permuteRopeRows(get(`${p}self_attn.q_proj.weight`, [dim, dim]), nHeads, dim, dim, 'toPairs'),
      wk: permuteRopeRows(get(`${p}self_attn.k_proj.weight`, [kvDim, dim]), nKvHeads, kvDim, dim, 'toPairs'),
      wv: get(`${p}self_attn.v_proj.weight`, [kvDim, dim]),
      wo: get(`${p}self_attn.o_proj.weight`, [dim, dim]),
      ffnNorm: get(`${p}post_attention_layernorm.weight`, [dim]),
      w1: get(`${p}mlp.gate_proj.weight`, [hiddenDim, dim]),
      w2: get(`${p}mlp.down_proj.weight`, [dim, hiddenDim]),
      w3: get(`${p}mlp.up_proj.weight`, [hiddenDim, dim]),
    });
  }
  const tokenEmbedding = get('model.embed_tokens.weight', [vocabSize, dim]);
  const finalNorm = get('model.norm.weight', [dim]);
  const tied = cfg.tie_word_embeddings ?? !tensors.has('lm_head.weight');
  const classifier = tied ? tokenEmbedding : get('lm_head.weight', [vocabSize, dim]);
  return { config, weights: { tokenEmbedding, layers, finalNorm, classifier }, sha256: hash.digest('hex') };
}

/**
 * The chat template a Hugging Face folder declares (`chat_template.jinja`,
 * `chat_template.json`'s `chat_template`, as newer transformers save it, or
 * `tokenizer_config.json`'s), or null. The pool renders chats with its own
 * (docs/chat-template.md); a chat-tuned model would see none of its role
 * markers, so the pool says so at start.
 */
export async function declaredChatTemplate(dir: string): Promise<{ file: string; template: string } | null> {
  const jinja = path.join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) {
    const text = await readFile(jinja, 'utf8').catch(() => '');
    if (text.trim() !== '') return { file: jinja, template: text };
  }
  for (const name of ['chat_template.json', 'tokenizer_config.json']) {
    const file = path.join(dir, name);
    const found = await templateIn(file);
    if (found !== null) return { file, template: found };
  }
  return null;
}

/** The `chat_template` of a JSON file, if it exists and holds one. */
async function templateIn(file: string): Promise<string | null> {
  if (!existsSync(file)) return null;
  try {
    const config = JSON.parse(await readFile(file, 'utf8')) as { chat_template?: unknown };
    if (typeof config.chat_template === 'string' && config.chat_template.trim() !== '') return config.chat_template;
    // Several named templates: [{name, template}].
    if (Array.isArray(config.chat_template) && config.chat_template.length > 0) return JSON.stringify(config.chat_template);
    return null;
  } catch {
    return null;
  }
}

/** Writes canonical weights as an HF Llama directory (config.json + model.safetensors). */
export async function writeHfCheckpoint(dir: string, config: ModelConfig, weights: ModelWeights): Promise<void> {
  await mkdir(dir, { recursive: true });
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, vocabSize } = config;
  const kvDim = nKvHeads * headDim;
  const tied = weights.classifier === weights.tokenEmbedding;
  const hfConfig = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama',
    hidden_size: dim, intermediate_size: hiddenDim, num_hidden_layers: config.nLayers,
    num_attention_heads: nHeads, num_key_value_heads: nKvHeads, vocab_size: vocabSize,
    max_position_embeddings: config.contextLength, rope_theta: config.ropeTheta, rms_norm_eps: config.normEps,
    tie_word_embeddings: tied, bos_token_id: config.bosId,
    eos_token_id: config.eosIds.length === 1 ? config.eosIds[0] : config.eosIds,
    hidden_act: 'silu', torch_dtype: 'float32',
  };
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [
    { name: 'model.embed_tokens.weight', shape: [vocabSize, dim], data: weights.tokenEmbedding },
  ];
  weights.layers.forEach((w, l) => {
    const p = `model.layers.${l}.`;
    tensors.push(
      { name: `${p}input_layernorm.weight`, shape: [dim], data: w.attnNorm },
      { name: `${p}self_attn.q_proj.weight`, shape: [dim, dim], data: permuteRopeRows(w.wq, nHeads, dim, dim, 'toHalves') },
      { name: `${p}self_attn.k_proj.weight`, shape: [kvDim, dim], data: permuteRopeRows(w.wk, nKvHeads, kvDim, dim, 'toHalves') },
      { name: `${p}self_attn.v_proj.weight`, shape: [kvDim, dim], data: w.wv },
      { name: `${p}self_attn.o_proj.weight`, shape: [dim, dim], data: w.wo },
      { name: `${p}post_attention_layernorm.weight`, shape: [dim], data: w.ffnNorm },
      { name: `${p}mlp.gate_proj.weight`, shape: [hiddenDim, dim], data: w.w1 },
      { name: `${p}mlp.down_proj.weight`, shape: [dim, hiddenDim], data: w.w2 },
      { name: `${p}mlp.up_proj.weight`, shape: [hiddenDim, dim], data: w.w3 },
    );
  });
  tensors.push({ name: 'model.norm.weight', shape: [dim], data: weights.finalNorm });
  if (!tied) tensors.push({ name: 'lm_head.weight', shape: [vocabSize, dim], data: weights.classifier });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfig, null, 2) + '\n');
  await writeFile(path.join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
}
