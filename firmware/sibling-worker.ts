/**
 * Start a worker thread from a module beside the caller's. Under a TypeScript loader (tests) the
 * caller is a .ts file and so is its worker; compiled, both are .js. The loader flags are kept,
 * flags that only make sense for the main entry (--input-type) are not.
 */
import { Worker } from 'node:worker_threads';

/** `fromUrl` is the caller's `import.meta.url`; `name` the worker module without extension. */
export function startSiblingWorker(fromUrl: string, name: string, workerData?: unknown): Worker {
  const ext = fromUrl.endsWith('.ts') ? 'ts' : 'js';
  return new Worker(new URL(`./${name}.${ext}`, fromUrl), {
    ...(workerData !== undefined ? { workerData } : {}),
    execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
  });
}
