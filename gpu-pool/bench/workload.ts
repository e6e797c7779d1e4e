/** Serving workloads: JSONL, one request per line (../shared/workloads/dev-sessions.jsonl format). */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { unreadableFile } from '../cli/cli-error';

export const workloadRequestSchema = z.object({
  user: z.string(),
  prompt: z.string(),
  max_tokens: z.number().int().min(1),
  temperature: z.number().min(0).default(0),
  top_p: z.number().gt(0).max(1).default(1),
  seed: z.number().int().min(0).optional(),
  arrival_s: z.number().min(0).optional(),
});
export type WorkloadRequest = z.infer<typeof workloadRequestSchema>;

export async function loadWorkload(file: string): Promise<WorkloadRequest[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadableFile('workload', file, err);
  }
  const out: WorkloadRequest[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new Error(`${file}:${i + 1}: not JSON`);
    }
    const parsed = workloadRequestSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${file}:${i + 1}: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`);
    out.push(parsed.data);
  });
  if (out.length === 0) throw new Error(`${file} holds no requests`);
  return out;
}
