/**
 * Where the project's shipped files live at run time. The runtime runs from
 * dist/firmware/*.js on the device and from firmware/*.ts under the test
 * loader; both find the project root by walking up to the directory that
 * holds board-configs/board.schema.json. QPERIPH_ROOT overrides (an installed
 * image may keep the runtime elsewhere).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QperiphError } from './errors.js';

const MARKER = join('board-configs', 'board.schema.json');

/**
 * The project root: `QPERIPH_ROOT` when set (it must hold board-configs/board.schema.json),
 * else the first directory above `startUrl` (this module) that does.
 */
export function findProjectRoot(
  env: NodeJS.ProcessEnv = process.env,
  startUrl: string = import.meta.url,
): string {
  const fromEnv = env['QPERIPH_ROOT'];
  if (fromEnv) {
    const root = resolve(fromEnv);
    if (!existsSync(join(root, MARKER))) {
      throw new QperiphError('CONFIG_ERR_SCHEMA', `QPERIPH_ROOT=${fromEnv} does not contain ${MARKER}`);
    }
    return root;
  }
  let dir = dirname(fileURLToPath(startUrl));
  for (;;) {
    if (existsSync(join(dir, MARKER))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new QperiphError(
        'CONFIG_ERR_SCHEMA',
        `No ${MARKER} found above ${fileURLToPath(startUrl)}; set QPERIPH_ROOT`,
      );
    }
    dir = parent;
  }
}

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(findProjectRoot(), 'package.json'), 'utf8')) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return '0.0.0';
  }
}
