/** The request workload replayed by the evaluator (../shared/workloads/*.jsonl lines). */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CliError, unreadableFile } from '../cli/cli-error';

export const workloadRequestSchema = z.object({
  user: z.string().min(1),
  prompt: z.string(),
  max_tokens: z.number().int().min(1),
  temperature: z.number().min(0).default(0),
  top_p: z.number().default(1),
  seed: z.number().int().optional(),
  arrival_s: z.number().min(0).default(0),
});
export type WorkloadRequest = z.infer<typeof workloadRequestSchema>;

/** Reads a JSONL workload, sorted by arrival (stable). */
export async function readWorkload(file: string): Promise<{ requests: WorkloadRequest[]; text: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadableFile('workload', file, err);
  }
  const requests: WorkloadRequest[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new CliError(`${file}:${i + 1}: not JSON`);
    }
    const r = workloadRequestSchema.safeParse(parsed);
    if (!r.success) throw new CliError(`${file}:${i + 1}: ${r.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
    requests.push(r.data);
  }
  if (requests.length === 0) throw new CliError(`${file}: no requests`);
  requests.sort((a, b) => a.arrival_s - b.arrival_s);
  return { requests, text };
}
