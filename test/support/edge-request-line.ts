import type { RunningEdge } from '../../launcher/stack';

/**
 * The edge's request-log line of a completion (by the hex its id shares with
 * the request id), once it is among the last lines of the edge's output.
 */
export async function edgeRequestLine(edge: RunningEdge, completionId: string): Promise<Record<string, unknown>> {
  const id = `"id":"req-${completionId.slice(completionId.indexOf('-') + 1)}"`;
  for (let waited = 0; ; waited += 50) {
    const text = edge.service.tail().split('\n').find((l) => l.includes(id));
    if (text) return JSON.parse(text.slice(text.indexOf('{'))) as Record<string, unknown>;
    if (waited > 5_000) throw new Error(`no request line for ${completionId}:\n${edge.service.tail()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
