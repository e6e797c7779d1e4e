import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CliError } from '../../gpu-pool/cli/cli-error';
import { nextTokenTablePath, writeNextTokenTable } from '../../gpu-pool/datastore/next-token-table-file';
import { NextTokenTableBuilder } from '../../shared/drafting/next-token-table';
import { checkPoolFlags, poolDrainGraceMs, serviceExitNote, upServedModelName, defaultDatastoreComplete, defaultDatastoreFile, edgeVarsFrom, ensureDefaultDatastore, selfContinuationsWanted, watchAnswers, watchSilentMsFrom } from '../../launcher/up';
import { edgeDevtoolsFromEnv } from '../../launcher/stack';
import { repoRoot } from '../../launcher/stack';
import { spawnService } from '../../launcher/service-process';
import { sssdNodeArgs } from '../support/compiled-cli';
import { models } from '../support/shared-data';

describe('SSSD_EDGE_DEVTOOLS', () => {
  it('turns the DevTools proxy on with 1 or true, off unset or with 0 or false, and refuses the rest by name', () => {
    for (const on of ['1', 'true']) expect(edgeDevtoolsFromEnv(on)).toBe(true);
    for (const off of [undefined, '', '0', 'false']) expect(edgeDevtoolsFromEnv(off)).toBe(false);
    // "yes" was taken for off without a word.
    expect(() => edgeDevtoolsFromEnv('yes')).toThrow(/SSSD_EDGE_DEVTOOLS must be 0, 1, true or false, got "yes"/);
  });
});

describe('a service that exits under up', () => {
  // A real child that says why it dies, as a pool refusing its model does.
  const dying = (echo?: (line: string) => void) =>
    spawnService('pool', process.execPath, ['-e', "console.error('request line'); console.error('sssd: the cause of death'); process.exit(3)"], { cwd: tmpdir(), env: process.env, echo });

  it("gives its last lines where its output was hidden: they are the cause of death", async () => {
    const service = dying();
    expect(service.echoed).toBe(false);
    expect(serviceExitNote(service, await service.exited)).toBe('pool exited (3)\nrequest line\nsssd: the cause of death');
  });

  it('gives none where its output was shown as it came (--verbose, --log-requests): not the same lines again, unprefixed (review h222)', async () => {
    const shown: string[] = [];
    const service = dying((line) => shown.push(line));
    expect(service.echoed).toBe(true);
    expect(serviceExitNote(service, await service.exited)).toBe('pool exited (3)');
    expect(shown).toEqual(['[pool] request line', '[pool] sssd: the cause of death']);
  });
});

describe('SSSD_DATASTORE_SELF', () => {
  it("builds the default datastore with the model's own continuations unless told off", () => {
    expect(selfContinuationsWanted(undefined)).toBe(true);
    expect(selfContinuationsWanted('')).toBe(true);
    expect(selfContinuationsWanted('on')).toBe(true);
    expect(selfContinuationsWanted('off')).toBe(false);
  });

  it('refuses anything else with a one-line error naming the variable', () => {
    expect(() => selfContinuationsWanted('no')).toThrow(CliError);
    expect(() => selfContinuationsWanted('no')).toThrow(/SSSD_DATASTORE_SELF must be on or off, got "no"/);
  });
});

describe('the default datastore', () => {
  it("lives in the repository's .cache, or under SSSD_CACHE_DIR where that is set", () => {
    const saved = process.env.SSSD_CACHE_DIR;
    try {
      delete process.env.SSSD_CACHE_DIR;
      expect(defaultDatastoreFile(true)).toBe(path.join(repoRoot, '.cache', 'datastore', 'stories260K.self.sssd-ds'));
      process.env.SSSD_CACHE_DIR = '/var/cache/sssd';
      expect(defaultDatastoreFile(false)).toBe('/var/cache/sssd/datastore/stories260K.sssd-ds');
    } finally {
      if (saved === undefined) delete process.env.SSSD_CACHE_DIR;
      else process.env.SSSD_CACHE_DIR = saved;
    }
  });

  it('is rebuilt once where its next-token table is missing or from before the table read the corpus', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sssd-up-'));
    try {
      const file = path.join(dir, 'stories260K.self.sssd-ds');
      expect(await defaultDatastoreComplete(file, true)).toBe(false);
      // The datastore's own bytes do not matter here, only which files are there.
      await writeFile(file, 'datastore');
      expect(await defaultDatastoreComplete(file, false)).toBe(true);
      expect(await defaultDatastoreComplete(file, true)).toBe(false);
      const b = new NextTokenTableBuilder(8);
      b.add([1, 2], 2, new Float32Array(8));
      const meta = { vocabSize: 8, tokenizerSha256: '', modelSha256: '' };
      await writeNextTokenTable(nextTokenTablePath(file), b.build(), meta);
      expect(await defaultDatastoreComplete(file, true)).toBe(false);
      await writeNextTokenTable(nextTokenTablePath(file), b.build(), { ...meta, corpusPositions: 12 });
      expect(await defaultDatastoreComplete(file, true)).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("is built from the model's own stories where there is no corpus (a machine outside), and said to be missing with that off too", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sssd-up-'));
    const saved = process.env.SSSD_CACHE_DIR;
    process.env.SSSD_CACHE_DIR = dir;
    try {
      const files = { model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer };
      const lines: string[] = [];
      const where = { corpus: path.join(dir, 'no-corpus.jsonl'), samples: 8 };
      const file = await ensureDefaultDatastore(files, true, (line) => lines.push(line), where);
      expect(file).toBe(path.join(dir, 'datastore', 'stories260K.samples.sssd-ds'));
      expect(lines.join('\n')).toMatch(/from 8 of the model's own stories .*no corpus beside the repository/);
      expect(await defaultDatastoreComplete(file, true)).toBe(true);
      // The build above ran bin/sssd.mjs itself (launcher/sssd-entry.ts); the check of it, sssd as compiled once (compiled-cli.ts).
      const info = JSON.parse((await promisify(execFile)(process.execPath, [...sssdNodeArgs(), 'datastore', 'info', file, '--json'])).stdout) as { documents: number };
      expect(info.documents).toBeGreaterThan(8);
      // Built once: a second start reuses it.
      lines.length = 0;
      expect(await ensureDefaultDatastore(files, true, (line) => lines.push(line), where)).toBe(file);
      expect(lines).toEqual([]);
      // Neither a corpus nor the model's own text: no datastore, said.
      const none = await ensureDefaultDatastore(files, false, (line) => lines.push(line), where);
      expect(existsSync(none)).toBe(false);
      expect(lines.join('\n')).toMatch(/no datastore: no corpus beside the repository, and SSSD_DATASTORE_SELF=off/);
    } finally {
      if (saved === undefined) delete process.env.SSSD_CACHE_DIR;
      else process.env.SSSD_CACHE_DIR = saved;
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("the Worker's tuning vars", () => {
  it('pass from the environment to the edge, and nothing else does', () => {
    expect(edgeVarsFrom({ SSSD_DEFAULT_CONCURRENCY: '64', SSSD_DEFAULT_RPM: '6000', SSSD_POOL_TOKEN: 'secret', SSSD_EDGE_TRIE_NODES: '', PATH: '/bin' })).toEqual({
      SSSD_DEFAULT_CONCURRENCY: '64',
      SSSD_DEFAULT_RPM: '6000',
    });
  });

  it('refuse to start on a bad value, naming the variable and its range', () => {
    expect(() => edgeVarsFrom({ SSSD_DEFAULT_CONCURRENCY: 'lots' })).toThrow(CliError);
    expect(() => edgeVarsFrom({ SSSD_DEFAULT_CONCURRENCY: 'lots', SSSD_MAX_BODY_BYTES: '10' })).toThrow(
      'SSSD_MAX_BODY_BYTES="10" is not an integer in [1024, 67108864]\nSSSD_DEFAULT_CONCURRENCY="lots" is not an integer in [1, 10000]',
    );
  });
});

describe("sssd up's watch on its services", () => {
  it('stops the stack for a service that refuses its health checks, not for one busy past them', async () => {
    const { createServer } = await import('node:net');
    const { freePort } = await import('../../launcher/service-process');
    const timing = { everyMs: 100, misses: 3, silentMs: 1500 };
    // Nothing listens: gone after three refusals.
    const refused = `http://127.0.0.1:${await freePort()}`;
    let started = Date.now();
    const refusedAfter = await new Promise<number>((resolve) => watchAnswers(refused, () => resolve(Date.now() - started), timing));
    expect(refusedAfter).toBeLessThan(1200);
    // Accepts, never answers (a worker busy with one request for seconds): silent, given the longer window.
    const sockets: import('node:net').Socket[] = [];
    const busy = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    started = Date.now();
    const why = await new Promise<{ after: number; why: string }>((resolve) =>
      watchAnswers(`http://127.0.0.1:${(busy.address() as { port: number }).port}`, (w) => resolve({ after: Date.now() - started, why: w }), timing),
    );
    expect(why.after).toBeGreaterThanOrEqual(1400);
    expect(why.why).toMatch(/healthz/);
    for (const s of sockets) s.destroy();
    busy.close();
  });
});

describe('SSSD_UP_SILENT_SECONDS', () => {
  it('sets how long a silent service is waited for, 20 s unset or empty, and refuses anything but whole seconds from 1 to 3600 by name', () => {
    expect(watchSilentMsFrom(undefined)).toBe(20_000);
    expect(watchSilentMsFrom('')).toBe(20_000);
    expect(watchSilentMsFrom('4')).toBe(4_000);
    expect(watchSilentMsFrom('3600')).toBe(3_600_000);
    for (const bad of ['0', '-5', '1.5', 'abc', '3601', '1e3']) {
      expect(() => watchSilentMsFrom(bad)).toThrow(CliError);
      expect(() => watchSilentMsFrom(bad)).toThrow(`SSSD_UP_SILENT_SECONDS must be whole seconds from 1 to 3600, got "${bad}"`);
    }
  });
});

describe("the pool's flags after --", () => {
  it('pass as given, and the ones sssd up sets itself are refused with what sets them instead', () => {
    expect(checkPoolFlags(['--max-active', '16', '--log-requests'])).toEqual(['--max-active', '16', '--log-requests']);
    expect(() => checkPoolFlags(['--port', '9000'])).toThrow(/--port after -- is set by sssd up itself; use up's --pool-port or SSSD_POOL_PORT/);
    expect(() => checkPoolFlags(['--model=x.bin'])).toThrow(/--model after -- is set by sssd up itself; use up's --model or SSSD_MODEL/);
    expect(() => checkPoolFlags(['16'])).toThrow(/"16" is not a flag: sssd up takes the pool's flags after --/);
  });

  it("give the pool its own --drain-seconds to stop in, and 10 s more, before it is killed", () => {
    expect(poolDrainGraceMs([])).toBe(40_000);
    expect(poolDrainGraceMs(['--max-active', '4', '--drain-seconds', '120'])).toBe(130_000);
    expect(poolDrainGraceMs(['--drain-seconds=0'])).toBe(10_000);
    expect(poolDrainGraceMs(['--drain-seconds', 'soon'])).toBe(40_000);
  });
});

describe('the served model name under sssd up', () => {
  it("is found by sssd up among the pool's flags after --, either spelling, before anything starts", () => {
    expect(upServedModelName(['--max-active', '4', '--served-model-name', 'tiny'], {})).toBe('tiny');
    expect(upServedModelName(['--served-model-name=tiny'], { SSSD_MODEL_NAME: 'other' })).toBe('tiny');
    expect(upServedModelName([], { SSSD_MODEL_NAME: 'from-env' })).toBe('from-env');
    expect(() => upServedModelName(['--served-model-name'], {})).toThrow(/--served-model-name is empty/);
    expect(() => upServedModelName(['--served-model-name', 'a b'], {})).toThrow(CliError);
  });
});
