// `sssd up` (= npm start): the pool and the edge together, see launcher/up.ts.
import type { Command } from 'commander';
import { runUp } from './up';

export function register(program: Command): void {
  program
    .command('up')
    .description('run the local stack: a pool (stories260K on CPU by default) and the edge under wrangler dev')
    .option('--model <path>', 'checkpoint: a llama2.c .bin or a Hugging Face folder (default: SSSD_MODEL, ../shared/models/stories260K/stories260K.bin, or .models/)')
    .option('--tokenizer <path>', 'tokenizer file (default: SSSD_TOKENIZER, else the one tok*.bin or tokenizer.bin beside a .bin model, a Hugging Face folder\'s tokenizer.json)')
    .option('--datastore <file>', 'datastore file (default: .cache/datastore/stories260K.self.sssd-ds, under SSSD_CACHE_DIR instead of .cache when set; built on first start from ../shared/workloads when present, else stories260K.samples.sssd-ds from the model\'s own stories)')
    // Kept as given: runUp checks it and names the flag and the value sent (Number gave "NaN").
    .option('--pool-port <port>', 'pool port (default: SSSD_POOL_PORT or 8788)')
    .option('--edge-port <port>', 'edge port (default: SSSD_EDGE_PORT or 8787)')
    .option('--verbose', 'echo the pool and edge output')
    // `sssd up --max-active 16` is the likely slip: say where the pool's flags go.
    .showHelpAfterError("(the pool's own flags go after --, e.g. sssd up -- --max-active 16; add --help for usage)")
    .argument('[pool-flags...]', "after --, flags for the pool (see sssd pool --help), e.g. sssd up -- --max-active 16 --log-requests; npm start -- -- --max-active 16")
    .action(async (poolFlags: string[], opts: { model?: string; tokenizer?: string; datastore?: string; poolPort?: number; edgePort?: number; verbose?: boolean }) => {
      await runUp({ ...opts, poolFlags });
    });
}
