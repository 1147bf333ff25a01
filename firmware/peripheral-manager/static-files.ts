/**
 * The UI's static files, read once at start into memory (the set is small). Requests are
 * answered by exact name lookup in this table, so no request path ever reaches the file system.
 * tsc does not copy these files to dist/, so they are read from the source tree, found through
 * findProjectRoot().
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { findProjectRoot } from '../paths.js';

export interface UiFile {
  body: Buffer;
  type: string;
  etag: string;
}

export type UiFiles = ReadonlyMap<string, UiFile>;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.png': 'image/png',
};

export function defaultUiDir(): string {
  return join(findProjectRoot(), 'firmware', 'peripheral-manager', 'ui');
}

export async function loadUiFiles(dir: string = defaultUiDir()): Promise<UiFiles> {
  const out = new Map<string, UiFile>();
  for (const name of await readdir(dir)) {
    const type = TYPES[extname(name)];
    if (!type || name.startsWith('.')) continue;
    const body = await readFile(join(dir, name));
    out.set(name, {
      body,
      type,
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    });
  }
  return out;
}
