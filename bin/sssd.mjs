#!/usr/bin/env node
// The `sssd` command. The sources are TypeScript; tsx compiles them on load so
// `npx sssd …` works straight after `npm install`, with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../gpu-pool/cli/main.ts');
await main(process.argv);
