/**
 * The runtime layer of the image: our compiled JavaScript, the board
 * configurations and the production node_modules, with native add-ons kept
 * only where they are built for the card's CPU (host binaries never go in).
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, copyFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { ImageError } from './errors.js';
import type { DebianArch } from './layout.js';

const exec = promisify(execFile);

/** ELF e_machine values of the card CPUs. */
const EM: Record<DebianArch, number> = { arm64: 183, armhf: 40 };

/**
 * Which CPU a native add-on is built for (pure): 'match', 'foreign' (another
 * CPU, or not Linux ELF at all), judged from the file's first 20 bytes.
 */
export function nativeBinaryFits(head: Uint8Array, arch: DebianArch): 'match' | 'foreign' {
  const b = Buffer.from(head.buffer, head.byteOffset, head.length);
  if (b.length < 20 || b.readUInt32BE(0) !== 0x7f454c46) return 'foreign';
  const cls = b[4]; // 1 = 32-bit, 2 = 64-bit
  const le = b[5] === 1;
  const machine = le ? b.readUInt16LE(18) : b.readUInt16BE(18);
  const wantClass = arch === 'arm64' ? 2 : 1;
  return machine === EM[arch] && cls === wantClass ? 'match' : 'foreign';
}

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
  overwrite = false,
): Promise<void> {
  await mkdir(dst, { recursive: true });
  const names = (await readdir(src)).sort();
  for (const n of names) {
    const s = join(src, n);
    const d = join(dst, n);
    const st = await lstat(s);
    const rel = relative(base, s);
    if (skip(rel, st.isDirectory())) continue;
    if (overwrite && !st.isDirectory()) await rm(d, { force: true });
    if (st.isDirectory()) await copyTree(s, d, skip, onFile, base, overwrite);
    else if (st.isSymbolicLink()) await symlink(await readlink(s), d);
    else if (st.isFile() && (await onFile(rel, s))) await copyFile(s, d);
  }
}

/**
 * Copy the runtime into `slotDir` (e.g. <overlay>/opt/qperiph/slots/a):
 * package.json, dist/firmware, the device-side image scripts, board-configs,
 * and the production node_modules filtered for `arch`.
 */
export async function stageRuntime(
  projectRoot: string,
  slotDir: string,
  arch: DebianArch,
  packages?: string[],
  /** A node_modules tree installed for the card's CPU (e.g. `npm ci --omit=dev --cpu=arm64 --os=linux`); its add-ons fill the gaps. */
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
  await copyTree(join(projectRoot, 'board-configs'), join(slotDir, 'board-configs'), () => false, plain);

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
          const head = (await readFile(abs)).subarray(0, 20);
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
  if (nativeModules) {
    // Overlay the card-CPU tree: packages the host lacks (another CPU's optional
    // dependency) and add-ons built for the card; foreign binaries still stay out.
    const fitted = new Set<string>();
    await copyTree(
      nativeModules,
      join(slotDir, 'node_modules'),
      (r, isDir) => (isDir && (r === '.bin' || r.endsWith(`${sep}obj.target`))) || r.endsWith('.map'),
      async (r, abs) => {
        if (r.endsWith('.node')) {
          if (nativeBinaryFits((await readFile(abs)).subarray(0, 20), arch) === 'foreign') return false;
          for (const m of report.missingNative)
            if (join('node_modules', r).startsWith(`${m}${sep}`)) fitted.add(m);
        }
        await count(abs);
        return true;
      },
      nativeModules,
      true,
    );
    report.missingNative = report.missingNative.filter((m) => !fitted.has(m));
  }
  report.droppedNative.sort();
  return report;
}

/** mkdir -p for a file's parent. */
export async function ensureParent(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
}
