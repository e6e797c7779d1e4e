// wrangler's DevTools proxy keeps every inspector event (each subrequest's
// body included) until DevTools attach: the launcher leaves it off unless asked.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { edgeProcessEnv, startEdge } from '../../launcher/stack';

describe('the edge process environment', () => {
  it("turns wrangler's DevTools proxy off unless DevTools are asked for", () => {
    expect(edgeProcessEnv({ PATH: '/bin' }, false)).toMatchObject({ PATH: '/bin', VSCODE_INSPECTOR_OPTIONS: '{}', WRANGLER_SEND_METRICS: 'false' });
    expect(edgeProcessEnv({ VSCODE_INSPECTOR_OPTIONS: ':::{"a":1}' }, false).VSCODE_INSPECTOR_OPTIONS).toBe(':::{"a":1}');
    expect(edgeProcessEnv({ VSCODE_INSPECTOR_OPTIONS: '{}' }, true)).not.toHaveProperty('VSCODE_INSPECTOR_OPTIONS');
  });
});

describe('SSSD_EDGE_DEVTOOLS', () => {
  it('serves DevTools on the inspector port when asked for, and names the port', async () => {
    const state = mkdtempSync(path.join(tmpdir(), 'sssd-devtools-'));
    const edge = await startEdge({ poolUrls: ['http://127.0.0.1:9'], poolToken: 't', devKey: 'k', persistTo: state, devtools: true });
    try {
      expect(edge.inspectorPort).not.toBeNull();
      const targets = (await (await fetch(`http://127.0.0.1:${edge.inspectorPort}/json`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
      expect(targets[0].webSocketDebuggerUrl).toContain(`:${edge.inspectorPort}/`);
    } finally {
      await edge.stop();
      rmSync(state, { recursive: true, force: true });
    }
  });
});
