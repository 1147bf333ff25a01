/**
 * The signing side of app updates: stage a runnable runtime tree from a built
 * project (what an app slot holds) and sign it as an app bundle. The tree is
 * `dist/firmware/**` (no source maps), `package.json` (its "version" is what
 * the device reports), `board-configs/` (the board schema is found through it)
 * and the Peripheral Manager UI. node_modules is not included: the launcher
 * links the factory tree's.
 */
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeBundle, type SignOptions } from './bundle.js';
import type { Manifest } from './bundle-codec.js';
import { UpdateError } from './errors.js';
import { packAppDir } from './pack.js';

async function copyDir(src: string, dest: string, skip: (name: string) => boolean): Promise<void> {
  await mkdir(dest, { recursive: true });
  for (const e of await readdir(src, { withFileTypes: true })) {
    if (skip(e.name)) continue;
    const s = join(src, e.name);
    const d = join(dest, e.name);
    if (e.isDirectory()) await copyDir(s, d, skip);
    else if (e.isFile()) await copyFile(s, d);
  }
}

/**
 * What a runtime reads from its own tree besides dist/ and package.json: the board configs (and
 * their schema) and the Peripheral Manager's UI files, which tsc leaves in the source tree. App
 * bundles and SD-card images both ship exactly these.
 */
export const RUNTIME_ASSET_DIRS: readonly string[] = ['board-configs', 'firmware/peripheral-manager/ui'];

/** Copy the runtime of a built project into `dest`, optionally with another package version. */
export async function stageRuntimeTree(
  projectRoot: string,
  dest: string,
  o: { version?: string } = {},
): Promise<void> {
  const dist = join(projectRoot, 'dist', 'firmware');
  try {
    await readFile(join(dist, 'cli.js'));
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_USAGE', `${dist}/cli.js missing: build first`, { cause: err });
  }
  await copyDir(dist, join(dest, 'dist', 'firmware'), (n) => n.endsWith('.map'));
  for (const d of RUNTIME_ASSET_DIRS) await copyDir(join(projectRoot, d), join(dest, d), () => false);
  const pkg = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  if (o.version !== undefined) pkg['version'] = o.version;
  await writeFile(join(dest, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
}

export interface AppBundleOptions {
  /** The runtime tree to ship (see stageRuntimeTree). */
  tree: string;
  out: string;
  key: KeyObject;
  /** Signer chain, leaf first (DER). */
  chain: Buffer[];
  version: string;
  securityVersion: number;
  compatible: string[];
  product?: string;
  installOrder?: string;
  chunkSize?: number;
}

/** Pack `tree` as an app archive and write it as a signed app bundle. */
export async function signAppBundle(o: AppBundleOptions): Promise<Manifest> {
  const work = await mkdtemp(join(tmpdir(), 'qperiph-appbundle-'));
  try {
    const archive = join(work, 'app.qaa');
    await packAppDir(o.tree, archive);
    const opts: SignOptions = {
      product: o.product ?? 'qperiph',
      compatible: o.compatible,
      version: o.version,
      securityVersion: o.securityVersion,
      installOrder: o.installOrder ?? randomBytes(8).toString('hex'),
      payloads: [{ name: 'app', type: 'app', path: archive }],
      key: o.key,
      chain: o.chain,
    };
    if (o.chunkSize !== undefined) opts.chunkSize = o.chunkSize;
    return await writeBundle(o.out, opts);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
