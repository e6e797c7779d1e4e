/**
 * A real pool process (stories260K on the CPU, a token of its own) for one
 * test file: started before its tests, stopped after them. Its URL and token
 * are read inside the tests, once it runs.
 */
import { afterAll, beforeAll } from 'vitest';
import { generatePoolToken, startPool, type RunningPool } from '../../launcher/stack';
import { models } from './shared-data';

export function realPoolForTests(): { readonly url: string; readonly token: string } {
  let pool: RunningPool | undefined;
  let token = '';
  beforeAll(async () => {
    token = generatePoolToken();
    pool = await startPool({ model: models.stories260K.checkpoint, tokenizer: models.stories260K.tokenizer, token });
  }, 120_000);
  afterAll(async () => {
    await pool?.service.stop();
  });
  return {
    get url(): string {
      if (!pool) throw new Error('the test pool is not running (read its url inside a test)');
      return pool.url;
    },
    get token(): string {
      return token;
    },
  };
}
