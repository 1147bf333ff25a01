/**
 * Where the project's shipped files live at run time. The runtime runs from
 * dist/firmware/*.js on the device and from firmware/*.ts under the test
 * loader; both find the package root by walking up to qperiph's package.json.
 * QPERIPH_ROOT overrides (an installed image keeps board-configs elsewhere).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

export function packageRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env['QPERIPH_ROOT']) return path.resolve(env['QPERIPH_ROOT']);
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'qperiph') {
          cached = dir;
          return dir;
        }
      } catch {}
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the qperiph package root (set QPERIPH_ROOT)');
    dir = up;
  }
}

export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
}
