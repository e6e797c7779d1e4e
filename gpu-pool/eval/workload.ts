/** The request workload replayed by the evaluator (../shared/workloads/*.jsonl lines): bench/workload.ts's, by arrival. */
import { parseWorkload, readWorkloadText, type WorkloadRequest } from '../bench/workload';

export { workloadRequestSchema, type WorkloadRequest } from '../bench/workload';

/** Reads a JSONL workload, sorted by arrival (stable), with its text. */
export async function readWorkload(file: string): Promise<{ requests: WorkloadRequest[]; text: string }> {
  const text = await readWorkloadText(file);
  const requests = parseWorkload(text, file).sort((a, b) => a.arrival_s - b.arrival_s);
  return { requests, text };
}
