// llama2.c checkpoints: header, shared vs separate classifier, size checks.
import { readFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { checkModelFile, loadModel } from '../../../gpu-pool/model/load-model';
import { parseLlama2cCheckpoint, writeLlama2cCheckpoint } from '../../../gpu-pool/model/llama2c-checkpoint';
import { CliError } from '../../../gpu-pool/cli/cli-error';
import { models, requireSharedData } from '../../support/shared-data';

requireSharedData();

describe('llama2.c checkpoints', () => {
  it('load every development model with its header and a stable sha256', async () => {
    const m = await loadModel(models.stories260K.checkpoint);
    expect(m.config).toMatchObject({ name: 'stories260K', dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8, vocabSize: 512, contextLength: 512, ropeTheta: 10000, normEps: 1e-5, eosIds: [1] });
    expect(m.sha256).toMatch(/^b0a507e7[0-9a-f]+2696$/);
    expect(m.weights.classifier).toBe(m.weights.tokenEmbedding);
    const b = await loadModel(models.babyllama105.checkpoint);
    expect(b.config).toMatchObject({ dim: 128, hiddenDim: 352, vocabSize: 105, contextLength: 256 });
  });

  it('round-trip a separate classifier (negative vocab size)', async () => {
    const m = await loadModel(models.stories260K.checkpoint);
    const untied = { ...m.weights, classifier: m.weights.tokenEmbedding.map((x) => -x) };
    const bytes = writeLlama2cCheckpoint(m.config, untied);
    expect(new DataView(bytes.buffer).getInt32(20, true)).toBe(-512);
    const back = parseLlama2cCheckpoint(bytes, 'untied.bin');
    expect(back.weights.classifier).not.toBe(back.weights.tokenEmbedding);
    expect(back.weights.classifier[5]).toBe(-m.weights.tokenEmbedding[5]);
    expect(Array.from(back.weights.layers[4].w2)).toEqual(Array.from(m.weights.layers[4].w2));
  });

  it('say a tokenizer given as the checkpoint is one, and which flag takes it', async () => {
    const err = await loadModel(models.stories260K.tokenizer).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/tok512\.bin: not a llama2\.c checkpoint: it is a llama2\.c tokenizer; give it as --tokenizer and the checkpoint as --model$/);
  });

  it('refuse a checkpoint holding a weight that is not finite, naming it: it would start healthy and answer nothing', async () => {
    const m = await loadModel(models.stories260K.checkpoint);
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'nan-ckpt-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    for (const [value, label] of [[NaN, 'NaN'], [Infinity, 'Infinity']] as const) {
      const finalNorm = m.weights.finalNorm.slice();
      finalNorm[3] = value;
      const file = join(dir, `bad-${label}.bin`);
      writeFileSync(file, writeLlama2cCheckpoint(m.config, { ...m.weights, finalNorm }));
      const err = await loadModel(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CliError);
      expect((err as Error).message).toContain(`weight finalNorm[3] is ${label}, not a finite number`);
    }
  });

  it('reject truncated, padded and foreign files with a CliError', () => {
    const bytes = new Uint8Array(readFileSync(models.stories260K.checkpoint));
    expect(() => parseLlama2cCheckpoint(bytes.subarray(0, 1000), 'x.bin')).toThrow(CliError);
    expect(() => parseLlama2cCheckpoint(bytes.subarray(0, 1000), 'x.bin')).toThrow(/truncated/);
    const padded = new Uint8Array(bytes.length + 4);
    padded.set(bytes);
    expect(() => parseLlama2cCheckpoint(padded, 'x.bin')).toThrow(/does not match/);
    expect(() => parseLlama2cCheckpoint(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'tok.bin')).toThrow(/not a llama2\.c checkpoint/);
    expect(() => parseLlama2cCheckpoint(new Uint8Array(10), 'x.bin')).toThrow(/too short/);
  });

  it('are checked from their header and size alone, each refusal naming the whole path, as the load would refuse them', async () => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'check-ckpt-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const bytes = readFileSync(models.stories260K.checkpoint);
    await expect(checkModelFile(models.stories260K.checkpoint)).resolves.toBeUndefined();
    // A folder is a Hugging Face model: left to the load.
    await expect(checkModelFile(dir)).resolves.toBeUndefined();
    const padded = new Uint8Array(bytes.length + 4);
    padded.set(bytes);
    const cases: [string, Uint8Array, RegExp][] = [
      ['truncated.bin', bytes.subarray(0, 100_000), new RegExp(`truncated llama2\\.c checkpoint \\(100000 bytes, expected ${bytes.length}\\)$`)],
      ['padded.bin', padded, /size \d+ does not match its llama2\.c header/],
      ['tok.bin', readFileSync(models.stories260K.tokenizer), /not a llama2\.c checkpoint: it is a llama2\.c tokenizer/],
      ['short.bin', new Uint8Array(10), /too short to be a llama2\.c checkpoint \(10 bytes\)/],
    ];
    for (const [name, content, said] of cases) {
      const file = join(dir, name);
      writeFileSync(file, content);
      const err = await checkModelFile(file).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(CliError);
      expect((err as Error).message, name).toMatch(said);
      expect((err as Error).message.startsWith(`${file}: `), name).toBe(true);
      // The same refusal as the load's, which names the file alone.
      await expect(loadModel(file), name).rejects.toThrow(said);
    }
    await expect(checkModelFile(join(dir, 'absent.bin'))).rejects.toThrow(`model not found: ${join(dir, 'absent.bin')}`);
  });
});
