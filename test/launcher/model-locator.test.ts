import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliError } from '../../gpu-pool/cli/cli-error';
import { locateModel } from '../../launcher/model-locator';
import { models, repoRoot, sharedDir } from '../support/shared-data';

const dirs: string[] = [];
function emptyRepo(): string {
  // A repository root with no ../shared beside it.
  const dir = mkdtempSync(path.join(tmpdir(), 'sssd-locate-'));
  dirs.push(dir);
  const repo = path.join(dir, 'repo');
  return repo;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('locateModel', () => {
  it.runIf(sharedDir === path.resolve(repoRoot, '..', 'shared'))('uses the development copy beside the repository when nothing is configured', async () => {
    const files = await locateModel({ repoRoot, env: {} });
    expect(files.origin).toBe('shared');
    expect(files.model).toBe(models.stories260K.checkpoint);
  });

  it('uses the development copy where SSSD_SHARED_DIR puts it, wherever the repository is', async () => {
    const files = await locateModel({ repoRoot: emptyRepo(), sharedDir: path.resolve(path.dirname(models.stories260K.checkpoint), '..', '..'), env: {}, modelHome: 'http://127.0.0.1:1' });
    expect(files.origin).toBe('shared');
    expect(files.model).toBe(models.stories260K.checkpoint);
  });

  it('explains what to do when the model can be neither found nor fetched', async () => {
    const err = await locateModel({ repoRoot: emptyRepo(), env: {}, modelHome: 'http://127.0.0.1:1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toMatch(/could not be fetched from http:\/\/127\.0\.0\.1:1/);
    // Which file, and why (not "fetch failed" alone); and the mirror option.
    expect((err as Error).message).toMatch(/http:\/\/127\.0\.0\.1:1\/stories260K\/stories260K\.bin: (bad port|.*ECONNREFUSED)/);
    expect((err as Error).message).toMatch(/SSSD_MODEL_HOME to a mirror serving stories260K\/stories260K\.bin and stories260K\/tok512\.bin/);
    expect((err as Error).message).toMatch(/SSSD_MODEL/);
  });

  it('refuses a tokenizer given without its model, rather than serve the default model with its own', async () => {
    const err = await locateModel({ repoRoot, env: { SSSD_TOKENIZER: models.babyllama105.tokenizer } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toMatch(/SSSD_TOKENIZER \(--tokenizer\) is set without SSSD_MODEL \(--model\)/);
  });

  it('rejects a configured model that does not exist', async () => {
    await expect(locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: '/nowhere/model.bin' } })).rejects.toThrow(/SSSD_MODEL \(--model\) points at/);
  });

  it("finds a configured model's tokenizer beside it, and says what to pass where it cannot", async () => {
    const baby = await locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: models.babyllama105.checkpoint } });
    expect(baby).toMatchObject({ tokenizer: models.babyllama105.tokenizer, origin: 'configured' });
    const folder = path.dirname(models.llama2xs.checkpoint);
    await expect(locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: folder } })).rejects.toThrow(/not a Hugging Face model \(no config\.json\); give the checkpoint file \(one of: llama2xs\.bin\)/);
    // Its tokenizer is no checkpoint to choose.
    await expect(locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: path.dirname(models.stories260K.checkpoint) } })).rejects.toThrow(/\(one of: stories260K\.bin\)/);
    // The tokenizer given as the model: said as such, naming the checkpoint beside it.
    await expect(locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: models.stories260K.tokenizer } })).rejects.toThrow(/tok512\.bin is named as a tokenizer is; give the checkpoint \(one of: stories260K\.bin\)/);
    // llama2xs has no tokenizer of its own beside it (it uses stories260K's).
    await expect(locateModel({ repoRoot: emptyRepo(), env: { SSSD_MODEL: models.llama2xs.checkpoint } })).rejects.toThrow(/No tokenizer found beside SSSD_MODEL/);
  });

  it.runIf(sharedDir === path.resolve(repoRoot, '..', 'shared'))('takes the default model named by its path as the default model (its datastore is built and used)', async () => {
    const files = await locateModel({ repoRoot, env: { SSSD_MODEL: path.relative(process.cwd(), models.stories260K.checkpoint) } });
    expect(files).toMatchObject({ tokenizer: models.stories260K.tokenizer, origin: 'shared' });
  });

  it('keeps nothing a home serves that is not the model (an HTML page answered with 200), and says what came', async () => {
    const server: Server = createServer((_req, res) => res.end('<html>sign in</html>'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const repo = emptyRepo();
      const err = await locateModel({ repoRoot: repo, env: {}, modelHome: `http://127.0.0.1:${port}` }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CliError);
      expect((err as Error).message).toMatch(/stories260K\.bin served 20 bytes that are not the file \(SHA-256 [0-9a-f]{12}…, expected b0a507e7ad0f…\); not kept/);
      expect(existsSync(path.join(repo, '.models/stories260K/stories260K.bin'))).toBe(false);
    } finally {
      server.close();
    }
  });

  it('fetches the default model once into .models/ from its home', async () => {
    const served: string[] = [];
    const server: Server = createServer((req, res) => {
      served.push(req.url ?? '');
      const file = req.url?.endsWith('tok512.bin') ? models.stories260K.tokenizer : models.stories260K.checkpoint;
      res.end(readFileSync(file));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const repo = emptyRepo();
      const home = `http://127.0.0.1:${port}/karpathy/tinyllamas/resolve/main`;
      const files = await locateModel({ repoRoot: repo, env: {}, modelHome: home });
      expect(files.origin).toBe('downloaded');
      expect(files.model).toBe(path.join(repo, '.models/stories260K/stories260K.bin'));
      expect(readFileSync(files.model).equals(readFileSync(models.stories260K.checkpoint))).toBe(true);
      const again = await locateModel({ repoRoot: repo, env: {}, modelHome: home });
      expect(again.origin).toBe('local');
      // A kept copy that is not the file (damaged, or kept before downloads were checked) is fetched again.
      writeFileSync(files.tokenizer, 'not a tokenizer');
      const lines: string[] = [];
      const fixed = await locateModel({ repoRoot: repo, env: {}, modelHome: home, log: (l) => lines.push(l) });
      expect(fixed.origin).toBe('downloaded');
      expect(readFileSync(fixed.tokenizer).equals(readFileSync(models.stories260K.tokenizer))).toBe(true);
      expect(lines.join('\n')).toMatch(/tok512\.bin is not the default model's file/);
      // And a failed fetch leaves such a copy where it was (a user's own file is not lost for want of a network).
      writeFileSync(fixed.tokenizer, 'my own tokenizer');
      await expect(locateModel({ repoRoot: repo, env: {}, modelHome: 'http://127.0.0.1:1' })).rejects.toThrow(/their SHA-256 is checked/);
      expect(readFileSync(fixed.tokenizer, 'utf8')).toBe('my own tokenizer');
      served.splice(2);
      expect(served).toEqual(['/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin', '/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin']);
    } finally {
      server.close();
    }
  });
});
