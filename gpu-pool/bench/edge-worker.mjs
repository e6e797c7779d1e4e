// Entry point of the bench edge's merge thread: a worker starts without the
// parent's TypeScript loader, so register tsx here, then load the real module.
import { register } from 'tsx/esm/api';

register();
await import('./edge-worker.ts');
