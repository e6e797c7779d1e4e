import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CliError, unreadableFile } from '../../../gpu-pool/cli/cli-error';
import { readWorkload } from '../../../gpu-pool/eval/workload';
import { readNextTokenTable } from '../../../gpu-pool/datastore/next-token-table-file';

const failure = (file: string): Promise<unknown> => readFile(file, 'utf8').then(() => null, (err: unknown) => err);

describe('a file that cannot be read', () => {
  it('is said in words by its role: missing, or a folder; never as Node\'s ENOENT', async () => {
    const missing = unreadableFile('workload', '/nonexistent/w.jsonl', await failure('/nonexistent/w.jsonl'));
    expect(missing).toBeInstanceOf(CliError);
    expect(missing.message).toBe('workload not found: /nonexistent/w.jsonl');
    expect(unreadableFile('corpus', tmpdir(), await failure(tmpdir())).message).toBe(`corpus ${tmpdir()} is a folder; name a file`);
    // As the commands say it (eval-drafts' workload was "not found" for a folder; the pool's --next-tokens gave Node's ENOENT).
    await expect(readWorkload(tmpdir())).rejects.toThrow(`workload ${tmpdir()} is a folder; name a file`);
    await expect(readNextTokenTable('/nonexistent/t.next-tokens')).rejects.toThrow(/^next-token table not found: \/nonexistent\/t\.next-tokens$/);
    await expect(readNextTokenTable(tmpdir())).rejects.toThrow(`next-token table ${tmpdir()} is a folder; name a file`);
  });

  it('names the folder a relative path was looked for in (review h222: "model not found: stories260K.bin" from a script that had changed folder)', async () => {
    const missing = unreadableFile('model', 'stories260K-absent.bin', await failure('stories260K-absent.bin'));
    expect(missing.message).toBe(`model not found: stories260K-absent.bin (looked for ${path.join(process.cwd(), 'stories260K-absent.bin')})`);
  });
});
