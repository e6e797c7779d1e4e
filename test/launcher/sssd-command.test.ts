/** The `sssd` program: each subcommand loaded only when named, every one listed where none is. */
import { describe, expect, it, vi } from 'vitest';
import { buildProgram, main } from '../../launcher/sssd-command';

const ALL = ['generate', 'bench-decode', 'datastore', 'eval-drafts', 'pool', 'bench-serve', 'up', 'bench-drafting', 'soak', 'key', 'kv'];
const names = async (...args: string[]): Promise<string[]> => (await buildProgram(['node', 'sssd', ...args])).commands.map((c) => c.name());

describe('sssd', () => {
  it('lists every subcommand where none is named (the top-level help, a mistyped name answered with the nearest)', async () => {
    expect(await names()).toEqual(ALL);
    expect(await names('--help')).toEqual(ALL);
    expect(await names('poool')).toEqual(ALL);
    expect(await names('help', 'pool')).toEqual(ALL);
  });

  it('loads only the subcommand named, with its own subcommands and flags', async () => {
    for (const name of ALL) expect(await names(name, '--help')).toEqual([name]);
    const datastore = (await buildProgram(['node', 'sssd', 'datastore', 'build'])).commands[0];
    expect(datastore.commands.map((c) => c.name())).toEqual(['build', 'info', 'bench']);
    const pool = (await buildProgram(['node', 'sssd', 'pool'])).commands[0];
    expect(pool.options.map((o) => o.long)).toContain('--datastore');
  });

  it('says that a command `help` is asked about does not exist, exit 2 (it printed the whole help without a word of it)', async () => {
    const run = async (...args: string[]): Promise<{ code: number | string | undefined; stdout: string; stderr: string }> => {
      let stdout = '';
      let stderr = '';
      const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
      const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
      const before = process.exitCode;
      try {
        await main(['node', 'sssd', ...args]);
        return { code: process.exitCode, stdout, stderr };
      } finally {
        out.mockRestore();
        err.mockRestore();
        process.exitCode = before;
      }
    };
    const unknown = await run('help', 'frobnicate');
    expect(unknown).toMatchObject({ code: 2, stdout: '' });
    expect(unknown.stderr).toMatch(/^error: unknown command 'frobnicate'\n/);
    expect((await run('help', 'poool')).stderr).toContain('(Did you mean pool?)');
    const known = await run('help', 'kv');
    expect(known).toMatchObject({ code: 0, stderr: '' });
    expect(known.stdout).toMatch(/^Usage: sssd kv /);
  });
});
