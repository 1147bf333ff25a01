/**
 * The runtime layer of the image: our compiled JavaScript, the board
 * configurations and the production node_modules, with native add-ons kept
 * only where they are built for the card's CPU (host binaries never go in).
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, readlink, symlink, copyFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { RUNTIME_ASSET_DIRS } from '../../firmware/update/runtime-tree.js';
import { ImageError } from './errors.js';
import type { DebianArch } from './layout.js';
import { assertNativeTree, nativeBinaryFits, readHead } from './native-check.js';
import { addonGaps } from './native-stage.js';

const exec = promisify(execFile);

export { nativeBinaryFits } from './native-check.js';

export interface RuntimeReport {
  files: number;
  bytes: number;
  /** Native add-ons left out (another CPU or OS), relative to the slot. */
  droppedNative: string[];
  /** Packages with native code but no add-on for the card's CPU: they need an arm build. */
  missingNative: string[];
}

/** Production package directories (absolute), from `npm ls --omit=dev`. */
export async function productionPackages(projectRoot: string): Promise<string[]> {
  try {
    const { stdout } = await exec('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
      cwd: projectRoot,
      maxBuffer: 64 << 20,
    });
    return stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && l !== projectRoot)
      .sort();
  } catch (err) {
    // npm ls exits non-zero on extraneous packages but still prints the tree.
    const out = (err as { stdout?: string }).stdout;
    if (out)
      return out
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && l !== projectRoot)
        .sort();
    throw new ImageError('IMAGE_ERR_RUNTIME', 'npm ls --omit=dev failed', { cause: err });
  }
}

async function copyTree(
  src: string,
  dst: string,
  skip: (rel: string, isDir: boolean) => boolean,
  onFile: (rel: string, abs: string) => Promise<boolean>,
  base = src,
): Promise<void> {
  await mkdir(dst, { recursive: true });
  const names = (await readdir(src)).sort();
  for (const n of names) {
    const s = join(src, n);
    const d = join(dst, n);
    const st = await lstat(s);
    const rel = relative(base, s);
    if (skip(rel, st.isDirectory())) continue;
    if (st.isDirectory()) await copyTree(s, d, skip, onFile, base);
    else if (st.isSymbolicLink()) await symlink(await readlink(s), d);
    else if (st.isFile() && (await onFile(rel, s))) await copyFile(s, d);
  }
}

/**
 * Copy the runtime into `slotDir` (e.g. <overlay>/opt/qperiph/slots/a):
 * package.json, dist/firmware, the device-side image scripts, board-configs,
 * the Peripheral Manager's UI files and the production node_modules filtered for `arch`.
 */
export async function stageRuntime(
  projectRoot: string,
  slotDir: string,
  arch: DebianArch,
  packages?: string[],
  /** A node_modules tree built for the card's CPU (`qperiph image native-modules`): used instead of the host's. */
  nativeModules?: string,
): Promise<RuntimeReport> {
  const report: RuntimeReport = { files: 0, bytes: 0, droppedNative: [], missingNative: [] };
  const count = async (abs: string): Promise<void> => {
    report.files++;
    report.bytes += (await lstat(abs)).size;
  };
  const dist = join(projectRoot, 'dist', 'firmware');
  try {
    await lstat(join(dist, 'cli.js'));
  } catch (err) {
    throw new ImageError('IMAGE_ERR_RUNTIME', `${dist}/cli.js not found: run 'npm run build' first`, {
      cause: err,
    });
  }
  await mkdir(slotDir, { recursive: true });
  await copyFile(join(projectRoot, 'package.json'), join(slotDir, 'package.json'));
  await count(join(projectRoot, 'package.json'));
  const noMaps = (rel: string, isDir: boolean): boolean => !isDir && rel.endsWith('.map');
  const plain = async (_rel: string, abs: string): Promise<boolean> => {
    await count(abs);
    return true;
  };
  await copyTree(dist, join(slotDir, 'dist', 'firmware'), noMaps, plain);
  // First-boot provisioning runs from the slot too (it imports ../../firmware/*).
  for (const f of ['firstboot.js', 'settings.js', 'errors.js']) {
    const src = join(projectRoot, 'dist', 'scripts', 'image', f);
    await mkdir(join(slotDir, 'dist', 'scripts', 'image'), { recursive: true });
    await copyFile(src, join(slotDir, 'dist', 'scripts', 'image', f));
    await count(src);
  }
  // Board configs and the Manager's UI files: the same set an app bundle's runtime tree carries.
  for (const d of RUNTIME_ASSET_DIRS)
    await copyTree(join(projectRoot, d), join(slotDir, d), () => false, plain);

  if (nativeModules) {
    // The card-CPU tree (qperiph image native-modules) is the slot's node_modules,
    // whole: nothing of the host's tree goes in. It is checked before a byte is copied.
    await assertNativeTree(nativeModules, arch, '--native-modules');
    await copyTree(
      nativeModules,
      join(slotDir, 'node_modules'),
      (r, isDir) =>
        (isDir && (r === '.bin' || r.endsWith(`${sep}obj.target`))) ||
        r.endsWith('.map') ||
        r === '.package-lock.json',
      async (r, abs) => {
        if (r.endsWith('.node') && nativeBinaryFits(await readHead(abs), arch) === 'foreign')
          throw new ImageError('IMAGE_ERR_NATIVE_FOREIGN', `${r} changed while the image was staged`, {
            files: [r],
          });
        await count(abs);
        return true;
      },
    );
    report.missingNative = (await addonGaps(nativeModules, arch)).missing;
    return report;
  }
  const pkgs = packages ?? (await productionPackages(projectRoot));
  const nm = join(projectRoot, 'node_modules') + sep;
  for (const pkg of pkgs) {
    if (!pkg.startsWith(nm)) continue;
    const rel = relative(projectRoot, pkg);
    let hadNative = false;
    let fits = false;
    await copyTree(
      pkg,
      join(slotDir, rel),
      // nested packages are listed (and copied) on their own; build trees hold host objects
      (r, isDir) =>
        (isDir && (r === 'node_modules' || r === '.bin' || r.endsWith(`${sep}obj.target`))) ||
        r.endsWith('.map'),
      async (r, abs) => {
        if (r.endsWith('.node')) {
          hadNative = true;
          const head = await readHead(abs);
          if (nativeBinaryFits(head, arch) === 'foreign') {
            report.droppedNative.push(join(rel, r));
            return false;
          }
          fits = true;
        }
        await count(abs);
        return true;
      },
    );
    if (hadNative && !fits) report.missingNative.push(rel);
  }
  report.droppedNative.sort();
  return report;
}

/** mkdir -p for a file's parent. */
export async function ensureParent(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
}
