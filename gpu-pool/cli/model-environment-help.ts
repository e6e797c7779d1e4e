/**
 * What the help of a command that loads a model (`pool`, `generate`, `datastore build`) says of the environment it
 * reads: no flag names these, and an operator looked for them in vain (review h137); SSSD_TOKENIZER was read by `up`
 * alone while the README said all of them took it (review h185).
 */

const MODEL_ENVIRONMENT: ReadonlyArray<readonly [name: string, what: string]> = [
  ['SSSD_TOKENIZER', 'the tokenizer file where --tokenizer is not given, before the one beside --model (as for `sssd up`)'],
  ['SSSD_EXECUTION_PROVIDER', 'cpu (default), cuda or webgpu (README.md, "GPU hosts")'],
  ['SSSD_WEBGPU_OPTIONS', "key=value,... passed to onnxruntime's WebGPU provider"],
  ['SSSD_THREADS', 'onnxruntime intra-op threads where --threads is not given (default 1)'],
  ['SSSD_CACHE_DIR', "where built graphs and the step-cost calibration are kept (default: the repository's .cache)"],
  ['SSSD_RESIDENT_KV', '1 or 0: keys/values stay on the GPU (default: on for webgpu)'],
  ['SSSD_PACKED_OUTPUTS', '1 or 0: the graph returns one packed output (default: on for a GPU without resident keys/values)'],
  ['SSSD_ATTENTION_GROUPS', "1 or 0: a batch whose pasts spread wide runs as two attention groups (host keys/values;\n" + ' '.repeat(30) + "default: on where the model's graph keeps its weights inline)"],
];

/** The lines, each `  NAME  what`, leaving out the names a command does not read (`datastore build` has its own --threads default). */
export function modelEnvironmentHelp(except: readonly string[] = []): string {
  return MODEL_ENVIRONMENT.filter(([name]) => !except.includes(name))
    .map(([name, what]) => `  ${name.padEnd(28)}${what}`)
    .join('\n');
}
