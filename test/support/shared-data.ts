// Paths to the read-only development data beside the repository
// (../shared from the repository root). Override with SSSD_SHARED_DIR.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedDir = process.env.SSSD_SHARED_DIR ?? path.resolve(repoRoot, '..', 'shared');

export const models = {
  stories260K: {
    checkpoint: path.join(sharedDir, 'models/stories260K/stories260K.bin'),
    tokenizer: path.join(sharedDir, 'models/stories260K/tok512.bin'),
    fixtures: path.join(sharedDir, 'fixtures/stories260K-greedy-dev.jsonl'),
  },
  llama2xs: {
    checkpoint: path.join(sharedDir, 'models/llama2xs/llama2xs.bin'),
    tokenizer: path.join(sharedDir, 'models/stories260K/tok512.bin'),
    fixtures: path.join(sharedDir, 'fixtures/llama2xs-greedy-dev.jsonl'),
  },
  babyllama105: {
    checkpoint: path.join(sharedDir, 'models/babyllama105/babyllama105.bin'),
    tokenizer: path.join(sharedDir, 'models/babyllama105/tok105.bin'),
    fixtures: path.join(sharedDir, 'fixtures/babyllama105-greedy-dev.jsonl'),
  },
} as const;

export const workloads = {
  devSessions: path.join(sharedDir, 'workloads/dev-sessions.jsonl'),
  datastoreCorpus: path.join(sharedDir, 'workloads/datastore-corpus.jsonl'),
};

export function requireSharedData(): void {
  if (!existsSync(models.stories260K.checkpoint)) {
    throw new Error(`development data not found at ${sharedDir} (set SSSD_SHARED_DIR)`);
  }
}
