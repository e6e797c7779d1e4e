/**
 * Serving workloads: JSONL, one request per line (../shared/workloads/dev-sessions.jsonl
 * format), as bench-serve, eval-drafts and the npm bench scripts read them.
 * One schema, with the pool's own bounds on sampling: a request the pool would
 * refuse (temperature 5) is refused here, by its line, before any run.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { samplingSchema } from '../../shared/protocol';
import { CliError, unreadableFile } from '../cli/cli-error';

export const workloadRequestSchema = z.object({
  user: z.string().min(1),
  prompt: z.string(),
  max_tokens: z.number().int().min(1),
  temperature: samplingSchema.shape.temperature,
  top_p: samplingSchema.shape.topP,
  seed: samplingSchema.shape.seed,
  arrival_s: z.number().min(0).default(0),
});
export type WorkloadRequest = z.infer<typeof workloadRequestSchema>;

/** The requests of a workload's text, in file order; a bad line is named by its number. */
export function parseWorkload(text: string, file: string): WorkloadRequest[] {
  const out: WorkloadRequest[] = [];
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
    const parsed = workloadRequestSchema.safeParse(json);
    if (!parsed.success) throw new CliError(`${file}:${i + 1}: ${parsed.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
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
