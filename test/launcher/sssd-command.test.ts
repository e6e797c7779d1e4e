/** The `sssd` program: each subcommand loaded only when named, every one listed where none is. */
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../launcher/sssd-command';

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
});
