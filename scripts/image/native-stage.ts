/**
 * The card-CPU node_modules stage: the production dependencies installed for
 * linux/<cpu> into a scratch directory (never the project's own tree), every
 * node-gyp add-on without a usable prebuild cross-compiled against the Node
 * headers on this machine (no download), every other add-on that the card
 * cannot load removed, and the result checked file by file (ELF e_machine).
 *
 *   1 install  npm install --omit=dev --os=linux --cpu=<cpu> --libc=glibc --ignore-scripts
 *   2 build    node-gyp rebuild --arch=<cpu> --nodedir=<headers>, CC/CXX=<triplet>-g++
 *   3 prune    foreign .node files out (Mach-O, x86-64, Windows, other ARM)
 *   4 check    every .node left is an ELF for the card; native-stage.json written
 */
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../../firmware/log/logger.js';
import { silentLogger } from '../../firmware/log/logger.js';
import { ImageError } from './errors.js';
import type { DebianArch } from './layout.js';
import { assertNativeTree, scanNativeTree } from './native-check.js';

const exec = promisify(execFile);

/** Per card CPU: npm's cpu name, node-gyp's arch, the GNU cross tool prefix and its apt package. */
export const CROSS: Readonly<
  Record<DebianArch, { npmCpu: string; gypArch: string; prefix: string; apt: string }>
> = Object.freeze({
  arm64: { npmCpu: 'arm64', gypArch: 'arm64', prefix: 'aarch64-linux-gnu-', apt: 'g++-aarch64-linux-gnu' },
  armhf: { npmCpu: 'arm', gypArch: 'arm', prefix: 'arm-linux-gnueabihf-', apt: 'g++-arm-linux-gnueabihf' },
});

/**
 * Add-ons the runtime can do without, and why. A package listed here may be
 * left without a card binary; any other gap stops the image build.
 */
export const NATIVE_FALLBACKS: Readonly<Record<string, string>> = Object.freeze({
  'node-unix-socket':
    'firmware/systemd/sd-notify.ts falls back to the systemd-notify tool; the registry has no linux-arm64-gnu build of 0.2.7',
});

export interface AddonPackage {
  /** Relative to the node_modules parent, e.g. node_modules/sockopt. */
  dir: string;
  name: string;
  /** gyp: has binding.gyp (node-gyp-build / bindings); napi: napi-rs, code in a per-platform package. */
  kind: 'gyp' | 'napi';
  /** napi only: the per-platform package names it may load. */
  platformPackages?: string[];
}

/** The package a napi-rs add-on loads on linux/<cpu> with glibc. Pure. */
export function napiPlatformPackage(name: string, arch: DebianArch): string {
  return arch === 'arm64' ? `${name}-linux-arm64-gnu` : `${name}-linux-arm-gnueabihf`;
}

/**
 * Whether node-gyp-build will find an add-on for the card in this package
 * without a build (pure): a fitting file in build/Release, or in
 * prebuilds/linux-<cpu>/. Paths relative to the package.
 */
export function gypAddonReady(nodeFiles: Array<{ rel: string; fits: boolean }>, arch: DebianArch): boolean {
  const pre = `prebuilds/linux-${CROSS[arch].npmCpu}/`;
  return nodeFiles.some(
    (f) => f.fits && (f.rel.startsWith('build/Release/') || f.rel.split(sep).join('/').startsWith(pre)),
  );
}

/** A file under prebuilds/<platform>-<arch>/ of a platform other than linux-<cpu> (pure). */
export function otherPlatformPrebuild(rel: string, arch: DebianArch): boolean {
  const parts = rel.split(sep);
  const i = parts.lastIndexOf('prebuilds');
  return i >= 0 && i < parts.length - 2 && parts[i + 1] !== `linux-${CROSS[arch].npmCpu}`;
}

/**
 * Every package under a node_modules tree (scoped and nested ones too) that
 * carries native code. `dir` is relative to the tree's parent ("node_modules/x").
 */
export async function findAddonPackages(nodeModules: string): Promise<AddonPackage[]> {
  const out: AddonPackage[] = [];
  const visitPkg = async (pkgRel: string): Promise<void> => {
    const abs = join(nodeModules, pkgRel);
    let pj: { name?: string; napi?: unknown } = {};
    try {
      pj = JSON.parse(await readFile(join(abs, 'package.json'), 'utf8')) as typeof pj;
    } catch {
      return;
    }
    const dir = join('node_modules', pkgRel);
    const name = pj.name ?? basenameOf(dir);
    if (await exists(join(abs, 'binding.gyp'))) out.push({ dir, name, kind: 'gyp' });
    else if (pj.napi) out.push({ dir, name, kind: 'napi' });
    await visitModules(join(pkgRel, 'node_modules'));
  };
  const visitModules = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(join(nodeModules, rel))).sort();
    } catch {
      return;
    }
    for (const n of names) {
      if (n.startsWith('.')) continue;
      if (n.startsWith('@')) {
        for (const s of (await readdir(join(nodeModules, rel, n)).catch(() => [] as string[])).sort())
          await visitPkg(join(rel, n, s));
      } else await visitPkg(join(rel, n));
    }
  };
  await visitModules('');
  return out;
}

/**
 * Which add-on packages of a node_modules tree the card can load as they are
 * (`ready`) and which it cannot (`missing`), as node_modules-relative dirs.
 */
export async function addonGaps(
  nodeModules: string,
  arch: DebianArch,
  addons?: AddonPackage[],
): Promise<{ ready: string[]; missing: string[] }> {
  const ready: string[] = [];
  const missing: string[] = [];
  const parent = dirname(nodeModules);
  for (const a of addons ?? (await findAddonPackages(nodeModules))) {
    let ok: boolean;
    if (a.kind === 'napi') {
      const plat = join(nodeModules, napiPlatformPackage(a.name, arch));
      ok = ((await scanNativeTree(plat, arch).catch(() => null))?.fitting.length ?? 0) > 0;
    } else ok = gypAddonReady(await packageNodeFiles(join(parent, a.dir), arch), arch);
    (ok ? ready : missing).push(a.dir);
  }
  return { ready, missing };
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** `.node` files of one package (not of its nested packages), relative to it, judged for `arch`. */
async function packageNodeFiles(
  pkgAbs: string,
  arch: DebianArch,
): Promise<Array<{ rel: string; fits: boolean }>> {
  const scan = await scanNativeTree(pkgAbs, arch);
  const own = (r: string): boolean => !r.split(sep).includes('node_modules');
  return [
    ...scan.fitting.filter(own).map((rel) => ({ rel, fits: true })),
    ...scan.foreign.filter((f) => own(f.file)).map((f) => ({ rel: f.file, fits: false })),
  ];
}

export interface NativeStageOptions {
  projectRoot: string;
  /** Scratch directory; the tree lands in <outDir>/node_modules. Must not be the project. */
  outDir: string;
  arch: DebianArch;
  /** Skip step 1 and work on an existing <outDir>/node_modules (tests; a re-run after a failed build). */
  skipInstall?: boolean;
  /** Directory with include/node/node_api.h (default: next to this node binary, else /usr). */
  nodeDir?: string;
  /** node-gyp's entry script (default: the project's, else npm's bundled one). */
  nodeGyp?: string;
  logger?: Logger;
}

export interface NativeStageReport {
  arch: DebianArch;
  nodeModules: string;
  /** Packages cross-compiled here. */
  built: string[];
  /** Packages whose prebuild for the card was usable as shipped. */
  prebuilt: string[];
  /** Foreign .node files removed, relative to the node_modules parent. */
  pruned: string[];
  /** Packages with native code left without a card binary (each has a fallback, else the stage fails). */
  missing: string[];
  /** Every .node file left (all checked to be ELF for the card). */
  addons: string[];
}

/** Headers for node-gyp without a download: a dir holding include/node/node_api.h. */
export async function findNodeDir(candidates?: string[]): Promise<string> {
  const list = candidates ?? [join(dirname(process.execPath), '..'), '/usr', '/usr/local'];
  for (const d of list) if (await exists(join(d, 'include/node/node_api.h'))) return d;
  throw new ImageError(
    'IMAGE_ERR_TOOL_MISSING',
    `no Node headers (include/node/node_api.h) in ${list.join(', ')}: install nodejs headers (libnode-dev) or pass --nodedir`,
  );
}

async function findNodeGyp(projectRoot: string): Promise<string> {
  const npmBin = await exec('npm', ['prefix', '-g']).then(
    (r) => join(r.stdout.trim(), 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
    () => '',
  );
  for (const c of [join(projectRoot, 'node_modules/node-gyp/bin/node-gyp.js'), npmBin])
    if (c && (await exists(c))) return c;
  throw new ImageError(
    'IMAGE_ERR_TOOL_MISSING',
    'node-gyp not found (neither in node_modules nor bundled with npm)',
  );
}

async function onPath(tool: string): Promise<boolean> {
  for (const d of (process.env['PATH'] ?? '/usr/bin:/bin').split(':'))
    if (
      await stat(join(d, tool)).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return true;
  return false;
}

/** Cross-compile one node-gyp add-on in place; leaves only build/Release/*.node (stripped). */
async function crossBuild(pkgAbs: string, arch: DebianArch, nodeDir: string, nodeGyp: string): Promise<void> {
  const c = CROSS[arch];
  const env = {
    ...process.env,
    CC: `${c.prefix}gcc`,
    CXX: `${c.prefix}g++`,
    LINK: `${c.prefix}g++`,
    AR: `${c.prefix}ar`,
    npm_config_nodedir: nodeDir,
    npm_config_arch: c.gypArch,
  };
  try {
    await exec(
      process.execPath,
      [nodeGyp, 'rebuild', `--arch=${c.gypArch}`, `--nodedir=${nodeDir}`, '--jobs=1'],
      {
        cwd: pkgAbs,
        env,
        maxBuffer: 64 << 20,
      },
    );
  } catch (err) {
    const e = err as { stderr?: string };
    throw new ImageError(
      'IMAGE_ERR_NATIVE_BUILD',
      `node-gyp cross build of ${pkgAbs} failed: ${(e.stderr ?? '').split('\n').slice(-8).join('\n')}`,
      { cause: err, files: [pkgAbs] },
    );
  }
  const release = join(pkgAbs, 'build/Release');
  const keep = (await readdir(release)).filter((n) => n.endsWith('.node')).sort();
  const tmp = join(pkgAbs, '.qperiph-release');
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  for (const n of keep) await copyFile(join(release, n), join(tmp, n));
  await rm(join(pkgAbs, 'build'), { recursive: true, force: true });
  await mkdir(join(pkgAbs, 'build'));
  await mkdir(release);
  for (const n of keep) {
    await copyFile(join(tmp, n), join(release, n));
    // smaller, and no build paths in the symbol table
    await exec(`${c.prefix}strip`, ['--strip-unneeded', join(release, n)]).catch(() => undefined);
  }
  await rm(tmp, { recursive: true, force: true });
}

/** Steps 1-4 (see the file header). Throws ImageError naming the step's problem. */
export async function stageNativeModules(o: NativeStageOptions): Promise<NativeStageReport> {
  const log = o.logger ?? silentLogger;
  const c = CROSS[o.arch];
  const nm = join(o.outDir, 'node_modules');
  if (!relative(o.projectRoot, o.outDir).startsWith('..'))
    throw new ImageError(
      'IMAGE_ERR_USAGE',
      `native stage dir ${o.outDir} is inside the project: use a scratch dir`,
    );
  if (!o.skipInstall) {
    await rm(nm, { recursive: true, force: true });
    await mkdir(o.outDir, { recursive: true });
    await copyFile(join(o.projectRoot, 'package.json'), join(o.outDir, 'package.json'));
    if (await exists(join(o.projectRoot, 'package-lock.json')))
      await copyFile(join(o.projectRoot, 'package-lock.json'), join(o.outDir, 'package-lock.json'));
    const args = [
      'install',
      '--omit=dev',
      '--os=linux',
      `--cpu=${c.npmCpu}`,
      '--libc=glibc',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
    ];
    log.info('native_stage', { step: 'install', args: args.join(' ') });
    try {
      await exec('npm', args, { cwd: o.outDir, maxBuffer: 64 << 20 });
    } catch (err) {
      throw new ImageError('IMAGE_ERR_NATIVE_BUILD', `npm ${args.join(' ')} in ${o.outDir} failed`, {
        cause: err,
      });
    }
  }
  if (!(await exists(nm))) throw new ImageError('IMAGE_ERR_RUNTIME', `${nm} not found`);

  const report: NativeStageReport = {
    arch: o.arch,
    nodeModules: nm,
    built: [],
    prebuilt: [],
    pruned: [],
    missing: [],
    addons: [],
  };
  const addons = await findAddonPackages(nm);
  const before = await addonGaps(nm, o.arch, addons);
  const toBuild = addons.filter((a) => a.kind === 'gyp' && before.missing.includes(a.dir));
  if (toBuild.length > 0) {
    if (!(await onPath(`${c.prefix}g++`)))
      throw new ImageError(
        'IMAGE_ERR_TOOL_MISSING',
        `${c.prefix}g++ not found: apt-get install ${c.apt} (needed for ${toBuild.map((a) => a.name).join(', ')})`,
      );
    const nodeDir = o.nodeDir ?? (await findNodeDir());
    const nodeGyp = o.nodeGyp ?? (await findNodeGyp(o.projectRoot));
    for (const a of toBuild) {
      log.info('native_stage', { step: 'build', package: a.name, nodeDir });
      await crossBuild(join(o.outDir, a.dir), o.arch, nodeDir, nodeGyp);
      report.built.push(a.dir);
    }
  }
  // 3 prune: node-gyp-build prefers build/Release, so a bogus prebuild can go;
  // so can another platform's prebuild even if it is an arm64 ELF (Android).
  const afterBuild = await scanNativeTree(nm, o.arch);
  const drop = [
    ...afterBuild.foreign.map((f) => f.file),
    ...afterBuild.fitting.filter((f) => otherPlatformPrebuild(f, o.arch)),
  ].sort();
  for (const f of drop) {
    await rm(join(nm, f), { force: true });
    report.pruned.push(join('node_modules', f));
  }
  // 4 check: every .node is the card's, and no gap without a fallback
  const after = await addonGaps(nm, o.arch, addons);
  report.prebuilt = after.ready.filter((d) => !report.built.includes(d));
  report.missing = after.missing;
  report.addons = (await assertNativeTree(nm, o.arch, 'native stage')).fitting.map((f) =>
    join('node_modules', f),
  );
  const unfallback = withoutFallback(report.missing);
  if (unfallback.length > 0)
    throw new ImageError(
      'IMAGE_ERR_NATIVE_MISSING',
      `no ${o.arch} binary for ${unfallback.join(', ')} and no fallback in the runtime`,
      { files: unfallback },
    );
  await writeFile(join(o.outDir, 'native-stage.json'), `${JSON.stringify(report, null, 2)}\n`);
  log.info('native_stage', {
    step: 'done',
    built: report.built,
    missing: report.missing,
    pruned: report.pruned.length,
  });
  return report;
}

/** Package name from a node_modules-relative dir (scoped names kept). */
export function basenameOf(dir: string): string {
  const parts = dir.split(sep);
  const i = parts.lastIndexOf('node_modules');
  return parts.slice(i + 1).join('/');
}

/** The packages of `missing` (node_modules-relative dirs) that the runtime cannot do without. Pure. */
export function withoutFallback(missing: string[]): string[] {
  return missing.filter((m) => !Object.hasOwn(NATIVE_FALLBACKS, basenameOf(m)));
}
