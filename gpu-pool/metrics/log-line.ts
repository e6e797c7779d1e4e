/**
 * One line of the pool's log (stderr), stamped with the time it was written
 * (UTC, ISO 8601, to the millisecond): a log read after an incident, or
 * collected without a supervisor's stamps, says when each line happened. The
 * request log (--log-requests) is JSON lines with their own `time` field and
 * does not come through here.
 */
export function logLine(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}
