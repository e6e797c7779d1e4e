/**
 * Serving workloads: JSONL, one request per line (../shared/workloads/dev-sessions.jsonl
 * format), as bench-serve, eval-drafts and the npm bench scripts read them.
 * One schema, with the pool's own bounds on sampling: a request the pool would
 * refuse (temperature 5) is refused here, by its line, before any run.
 *
 * A line says what it means or is refused: `temperature` is required, since
 * its default differs between the pool (0, greedy) and OpenAI (1), and a trace
 * that leaves it out meant OpenAI's; a field the reader would not honour is
 * refused rather than dropped (zod's objects strip unknown keys: `stop` and
 * `top_k` were once ignored without a word, review h192).
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { followedStopString, MAX_STOP_STRINGS, MAX_STOP_STRING_CHARS, samplingSchema, type GenerateRequest } from '../../shared/protocol';
import type { PoolFeature } from '../../shared/pool-features';
import { CliError, unreadableFile } from '../cli/cli-error';

/** What every reader replays: who asks, what, how long, and how it is sampled. `arrival_s` orders eval-drafts' replay; bench-serve keeps a fixed number in flight and reads no arrival times. */
const requestFields = {
  user: z.string().min(1),
  prompt: z.string(),
  max_tokens: z.number().int().min(1),
  temperature: samplingSchema.shape.temperature.unwrap(),
  // Not required: absent means 1 at the pool and at OpenAI alike, so a line without it means what its trace meant.
  top_p: samplingSchema.shape.topP,
  seed: samplingSchema.shape.seed,
  arrival_s: z.number().min(0).default(0),
};

const stopString = z.string().refine(followedStopString, `a stop string is 1 to ${MAX_STOP_STRING_CHARS} characters, without half a character (a lone surrogate)`);

/**
 * What bench-serve replays besides: OpenAI's and vLLM's request fields the
 * pool's generate request takes as they are (null = not set, as OpenAI reads
 * it). Stop strings only as the pool follows them, since bench-serve plays no
 * edge that would find the others in the text.
 */
const servedFields = {
  stop: z.union([stopString, z.array(stopString).max(MAX_STOP_STRINGS)]).nullish(),
  /** vLLM's: -1 or 0 = no cut. */
  top_k: z.number().int().min(-1).max(100_000).nullish(),
  min_p: samplingSchema.shape.minP.unwrap().nullish(),
  frequency_penalty: samplingSchema.shape.frequencyPenalty.unwrap().nullish(),
  presence_penalty: samplingSchema.shape.presencePenalty.unwrap().nullish(),
  repetition_penalty: samplingSchema.shape.repetitionPenalty.unwrap().nullish(),
};

/** A workload line as eval-drafts and the bench scripts read it. */
export const workloadRequestSchema = z.strictObject(requestFields);
export type WorkloadRequest = z.infer<typeof workloadRequestSchema>;

/** A workload line as bench-serve reads it: the pool's other sampling fields and stop strings too. */
export const servedWorkloadRequestSchema = z.strictObject({ ...requestFields, ...servedFields });
export type ServedWorkloadRequest = z.infer<typeof servedWorkloadRequestSchema>;

type WorkloadSchema = typeof workloadRequestSchema | typeof servedWorkloadRequestSchema;

/** A missing or null required field, in words a trace's author acts on (zod's: "expected number, received undefined"). */
function missingField(issue: { code: string; input?: unknown; path?: PropertyKey[] }): string | undefined {
  if (issue.code !== 'invalid_type' || (issue.input !== undefined && issue.input !== null)) return undefined;
  if (issue.path?.[0] === 'temperature') return "required: 0 for greedy decoding (OpenAI's default, for a request that names none, is 1)";
  return 'required';
}

function issueText(issue: z.core.$ZodIssue, fields: readonly string[]): string {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `"${k}"`).join(', ');
    return `${issue.keys.length === 1 ? 'unknown field' : 'unknown fields'} ${keys}: not replayed here (a line takes ${fields.join(', ')})`;
  }
  return `${issue.path.join('.')}: ${issue.message}`;
}

/**
 * The requests of a workload's text, in file order; a bad line is named by its
 * number. `schema` is the reader's: the served one for bench-serve, which
 * replays more fields than eval-drafts does.
 */
export function parseWorkload(text: string, file: string): WorkloadRequest[];
export function parseWorkload(text: string, file: string, schema: typeof servedWorkloadRequestSchema): ServedWorkloadRequest[];
export function parseWorkload(text: string, file: string, schema: WorkloadSchema = workloadRequestSchema): ServedWorkloadRequest[] {
  const fields = Object.keys(schema.shape);
  const out: ServedWorkloadRequest[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new CliError(`${file}:${i + 1}: not JSON`);
    }
    const parsed = schema.safeParse(json, { error: missingField });
    if (!parsed.success) throw new CliError(`${file}:${i + 1}: ${parsed.error.issues.map((x) => issueText(x, fields)).join('; ')}`);
    out.push(parsed.data);
  }
  if (out.length === 0) throw new CliError(`${file} holds no requests`);
  return out;
}

export async function readWorkloadText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw unreadableFile('workload', file, err);
  }
}

export async function loadWorkload(file: string): Promise<WorkloadRequest[]> {
  return parseWorkload(await readWorkloadText(file), file);
}

/** bench-serve's reading of a workload file. */
export async function loadServedWorkload(file: string): Promise<ServedWorkloadRequest[]> {
  return parseWorkload(await readWorkloadText(file), file, servedWorkloadRequestSchema);
}

/** A request's sampling and stop strings as the pool's generate request takes them. */
export function poolFieldsOf(request: ServedWorkloadRequest): Pick<GenerateRequest, 'sampling'> & Partial<Pick<GenerateRequest, 'stopStrings'>> {
  const stop = request.stop ?? [];
  const stopStrings = typeof stop === 'string' ? [stop] : stop;
  return {
    sampling: {
      temperature: request.temperature,
      topP: request.top_p,
      topK: Math.max(0, request.top_k ?? 0),
      minP: request.min_p ?? 0,
      frequencyPenalty: request.frequency_penalty ?? 0,
      presencePenalty: request.presence_penalty ?? 0,
      repetitionPenalty: request.repetition_penalty ?? 1,
      ...(request.seed !== undefined ? { seed: request.seed } : {}),
    },
    ...(stopStrings.length > 0 ? { stopStrings } : {}),
  };
}

/** The field each of the pool's features stands for, as a workload names it. */
const FEATURE_FIELDS: ReadonlyArray<[PoolFeature, keyof ServedWorkloadRequest, (r: ServedWorkloadRequest) => boolean]> = [
  // A pool that does not stop at a stop string generates on to max_tokens: here no edge would cut the text.
  ['stopStrings', 'stop', (r) => r.stop !== undefined && r.stop !== null && r.stop.length > 0],
  ['sampling.minP', 'min_p', (r) => (r.min_p ?? 0) !== 0],
  ['sampling.frequencyPenalty', 'frequency_penalty', (r) => (r.frequency_penalty ?? 0) !== 0],
  ['sampling.presencePenalty', 'presence_penalty', (r) => (r.presence_penalty ?? 0) !== 0],
  ['sampling.repetitionPenalty', 'repetition_penalty', (r) => (r.repetition_penalty ?? 1) !== 1],
];

/**
 * The workload's fields a pool honouring only `features` would drop unread
 * (a pool from before a field strips it and answers 200), each with the
 * feature it lacks: empty where the pool serves the workload as written.
 */
export function unhonouredFields(requests: readonly ServedWorkloadRequest[], features: readonly string[]): string[] {
  return FEATURE_FIELDS.filter(([feature, , used]) => !features.includes(feature) && requests.some(used)).map(([feature, field]) => `${field} (the pool lists no ${feature} feature)`);
}
