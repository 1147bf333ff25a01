/**
 * The image build, in a fixed order, each step named in its errors:
 *   1 stage      overlay tree: runtime, units, first-boot, trust anchors, configs
 *   2 root       base tarball + overlay -> root tree (under fakeroot: ownership kept, no root needed)
 *   3 boot       boot files from the base + our config.txt/cmdline.txt/autoboot.txt/settings
 *   4 fs         genimage: vfat (mkdosfs + mtools) and ext4 (mke2fs -d) images; no mounts, no loop devices
 *   5 clamp      ext4 inode change/access times set to SOURCE_DATE_EPOCH (mke2fs copies the host values)
 *   6 disk       genimage: the card (GPT A/B for the Pi, MBR + raw U-Boot environment for BeagleBone)
 *   7 manifest   sizes and SHA-256 of every image
 *   8 bundle     emitBundle(): the signed update bundle from the same fs images
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  copyFile,
  lstat,
  mkdir,
  readdir,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
  lutimes,
  readFile,
} from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { BoardConfig } from '../../firmware/config/board-types.js';
import type { Logger } from '../../firmware/log/logger.js';
import { silentLogger } from '../../firmware/log/logger.js';
import { ImageError } from './errors.js';
import {
  DEFAULT_SIZES,
  fsTimestamp,
  fstab,
  fwEnvConfig,
  genimageDiskConfig,
  genimageFsConfig,
  imageProfile,
  piAutoboot,
  piCmdline,
  piConfigTxt,
  UBOOT_ENV,
  ubootEnvVars,
  type ImageProfile,
  type ImageSizes,
} from './layout.js';
import { assertNativeTree } from './native-check.js';
import { withoutFallback } from './native-stage.js';
import { stageRuntime, type RuntimeReport } from './runtime.js';
import { renderSettingsTemplate, SETTINGS_FILE } from './settings.js';
import { encodeUbootEnv } from './uboot-env.js';
import { emitBundle, type BundleResult, type SigningInput } from './bundle-step.js';

const exec = promisify(execFile);

export const REQUIRED_TOOLS = [
  'genimage',
  'mkdosfs',
  'mcopy',
  'mke2fs',
  'debugfs',
  'dumpe2fs',
  'fakeroot',
  'tar',
] as const;

export interface BuildOptions {
  projectRoot: string;
  board: Readonly<BoardConfig>;
  baseTarball: string;
  outDir: string;
  /** Scratch space (default <outDir>/.work); removed after a successful build unless keepWork. */
  workDir?: string;
  keepWork?: boolean;
  sourceDateEpoch: number;
  version: string;
  sizes?: Partial<ImageSizes>;
  /** PEM file(s) with the update trust anchors to provision (release channel). */
  anchorsPem?: string[];
  signing?: SigningInput;
  /** Production package dirs (default: npm ls --omit=dev). */
  packages?: string[];
  /** node_modules built for the card's CPU (native-stage.ts); replaces the host's tree in the image. */
  nativeModules?: string;
  logger?: Logger;
}

export interface ImageFileInfo {
  name: string;
  size: number;
  sha256: string;
}

export interface BuildResult {
  board: string;
  layout: ImageProfile['kind'];
  card: string;
  files: ImageFileInfo[];
  runtime: RuntimeReport;
  bundle: BundleResult;
  stepsMs: Record<string, number>;
}

async function which(tool: string): Promise<boolean> {
  for (const d of (process.env['PATH'] ?? '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    try {
      await stat(join(d, tool));
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

export async function missingTools(tools: readonly string[] = REQUIRED_TOOLS): Promise<string[]> {
  const out: string[] = [];
  for (const t of tools) if (!(await which(t))) out.push(t);
  return out;
}

function toolEnv(sde: number): NodeJS.ProcessEnv {
  const path = `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`;
  return {
    ...process.env,
    PATH: path,
    SOURCE_DATE_EPOCH: String(sde),
    E2FSPROGS_FAKE_TIME: String(sde),
    MTOOLS_SKIP_CHECK: '1',
    LC_ALL: 'C',
    TZ: 'UTC',
  };
}

async function run(
  step: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { env, cwd, maxBuffer: 256 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: unknown };
    const tail = (e.stderr ?? '').trim().split('\n').slice(-8).join('\n');
    throw new ImageError('IMAGE_ERR_TOOL_FAILED', `${step}: ${cmd} failed (${String(e.code)}): ${tail}`, {
      cause: err,
    });
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function writeText(path: string, text: string, mode = 0o644): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, text, { mode });
}

/** Bytes a tree will take on ext4 (4 KiB blocks plus an inode's worth per entry). */
async function treeFootprint(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const n of await readdir(d)) {
      const p = join(d, n);
      const st = await lstat(p);
      total += 4096 + Math.ceil(st.size / 4096) * 4096;
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return total;
}

/** Set mtime (and atime) of every entry in a tree, symlinks included. */
async function clampTree(dir: string, sde: number): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const n of await readdir(d)) {
      const p = join(d, n);
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p);
      if (st.isSymbolicLink()) await lutimes(p, sde, sde);
      else await utimes(p, sde, sde);
    }
  };
  await walk(dir);
  await utimes(dir, sde, sde);
}

// ---- step 1: the overlay ----

/** Where the image puts the runtime the launcher runs (qperiph.service's ExecStart). */
export const FACTORY_TREE = 'opt/qperiph/factory';
/** The launcher's --app-root: A/B app slots for updates. */
export const APP_ROOT = 'opt/qperiph/slots';
/** Where qperiph-firstboot makes the SSH host keys (`ssh-keygen -A -f /persistent/ssh`). */
export const SSH_HOST_KEY_DIR = '/persistent/ssh/etc/ssh';

/** The targets of a unit's `[Install] WantedBy=` lines (pure). */
export function wantedBy(unitText: string): string[] {
  let section = '';
  const out: string[] = [];
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) section = sec[1] as string;
    else if (section === 'Install') {
      const m = /^WantedBy=(.*)$/.exec(line);
      if (m) out.push(...(m[1] as string).split(/\s+/).filter(Boolean));
    }
  }
  return out;
}

async function stageOverlay(o: BuildOptions, profile: ImageProfile, overlay: string): Promise<RuntimeReport> {
  const b = o.board;
  const runtime = await stageRuntime(
    o.projectRoot,
    join(overlay, FACTORY_TREE),
    profile.arch,
    o.packages,
    o.nativeModules,
  );
  // Whatever went in, the slot carries no add-on the card cannot load.
  await assertNativeTree(join(overlay, FACTORY_TREE), profile.arch, 'runtime stage');
  if (o.nativeModules) {
    const gaps = withoutFallback(runtime.missingNative);
    if (gaps.length > 0)
      throw new ImageError(
        'IMAGE_ERR_NATIVE_MISSING',
        `--native-modules has no ${profile.arch} binary for ${gaps.join(', ')} (run 'qperiph image native-modules')`,
        { files: gaps },
      );
  }
  // The app slots (contract B): empty on a fresh card, so the launcher runs the
  // factory tree; the layout is what initDirectorySlots() would make.
  for (const slot of ['a', 'b']) await mkdir(join(overlay, APP_ROOT, slot), { recursive: true });
  await symlink('a', join(overlay, APP_ROOT, 'current'));
  // The runtime (User=qperiph) writes the slots: tmpfiles hands them over at boot.
  await writeText(
    join(overlay, 'etc/tmpfiles.d/qperiph.conf'),
    [
      'd /opt/qperiph/slots 0755 qperiph qperiph -',
      'd /opt/qperiph/slots/a 0755 qperiph qperiph -',
      'd /opt/qperiph/slots/b 0755 qperiph qperiph -',
      '',
    ].join('\n'),
  );
  await writeText(join(overlay, 'etc/qperiph/board.json'), `${JSON.stringify(b, null, 2)}\n`);
  const settingsDir = profile.kind === 'rpi-ab-gpt' ? 'boot/bootconfig' : 'boot/firmware';
  await writeText(join(overlay, 'etc/qperiph/settings-dir'), `${settingsDir}\n`);
  await writeText(
    join(overlay, 'etc/qperiph/image.json'),
    `${JSON.stringify({ board: b.id, version: o.version, layout: profile.kind, arch: profile.arch, sourceDateEpoch: o.sourceDateEpoch }, null, 2)}\n`,
  );
  // Trust anchors for update bundles (firmware/update/trust.ts: <dir>/<channel>/*.pem).
  await mkdir(join(overlay, 'etc/qperiph/trust/release'), { recursive: true });
  for (const [i, pem] of (o.anchorsPem ?? []).entries()) {
    await copyFile(pem, join(overlay, `etc/qperiph/trust/release/anchor-${i}.pem`));
  }
  // systemd: units + what `systemctl enable` would create.
  const sysd = join(overlay, 'etc/systemd/system');
  await mkdir(join(sysd, 'multi-user.target.wants'), { recursive: true });
  await mkdir(join(sysd, 'sysinit.target.wants'), { recursive: true });
  await copyFile(join(o.projectRoot, 'scripts/systemd/qperiph.service'), join(sysd, 'qperiph.service'));
  await copyFile(
    join(o.projectRoot, 'scripts/image/device/qperiph-firstboot.service'),
    join(sysd, 'qperiph-firstboot.service'),
  );
  await symlink('/etc/systemd/system/qperiph.service', join(sysd, 'multi-user.target.wants/qperiph.service'));
  // Socket units of the runtime (socket activation), enabled as their [Install] says.
  for (const n of (await readdir(join(o.projectRoot, 'scripts/systemd')))
    .filter((f) => f.endsWith('.socket'))
    .sort()) {
    const text = await readFile(join(o.projectRoot, 'scripts/systemd', n), 'utf8');
    await copyFile(join(o.projectRoot, 'scripts/systemd', n), join(sysd, n));
    for (const target of wantedBy(text)) {
      await mkdir(join(sysd, `${target}.wants`), { recursive: true });
      await symlink(`/etc/systemd/system/${n}`, join(sysd, `${target}.wants`, n));
    }
  }
  await symlink(
    '/etc/systemd/system/qperiph-firstboot.service',
    join(sysd, 'sysinit.target.wants/qperiph-firstboot.service'),
  );
  await symlink(
    '/lib/systemd/system/systemd-networkd.service',
    join(sysd, 'multi-user.target.wants/systemd-networkd.service'),
  );
  await writeText(
    join(overlay, 'etc/sysusers.d/qperiph.conf'),
    'g gpio - -\nu qperiph - "qperiph runtime" /var/lib/qperiph /usr/sbin/nologin\nm qperiph audio\nm qperiph gpio\nm qperiph dialout\n',
  );
  // linuxptp: no ptp4l unit. The runtime writes ptp4l's configuration from the board (AES67
  // profile) and runs it as a supervised child (firmware/audio/ptp.ts); a second ptp4l from
  // Debian's ptp4l@.service would fight it for ports 319/320.
  await writeText(join(overlay, 'etc/fstab'), fstab(profile));
  await writeText(join(overlay, 'etc/hostname'), `${b.hostnamePrefix}\n`);
  // Empty machine-id: systemd makes one on first boot (and ConditionFirstBoot= works).
  await writeText(join(overlay, 'etc/machine-id'), '', 0o444);
  // No password anywhere: keys only (qperiph.txt ssh_key lines).
  await writeText(
    join(overlay, 'etc/ssh/sshd_config.d/10-qperiph.conf'),
    [
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      // Host keys live on the persistent partition (made there by qperiph-firstboot): a new
      // system slot after an update keeps the device's SSH identity.
      `HostKey ${SSH_HOST_KEY_DIR}/ssh_host_ed25519_key`,
      `HostKey ${SSH_HOST_KEY_DIR}/ssh_host_ecdsa_key`,
      `HostKey ${SSH_HOST_KEY_DIR}/ssh_host_rsa_key`,
      '',
    ].join('\n'),
  );
  if (profile.kind === 'uboot-ab-mbr') await writeText(join(overlay, 'etc/fw_env.config'), fwEnvConfig());
  for (const d of ['persistent', 'boot/bootconfig', 'boot/firmware', 'var/lib/qperiph'])
    await mkdir(join(overlay, d), { recursive: true });
  return runtime;
}

// ---- step 3: boot trees ----

async function stageBoot(
  o: BuildOptions,
  profile: ImageProfile,
  root: string,
  input: string,
): Promise<{ boot: string[]; bootconfig: string[] }> {
  const boot = join(input, 'boot');
  await mkdir(boot, { recursive: true });
  const fw = join(root, 'boot/firmware');
  const names = await readdir(fw).catch(() => [] as string[]);
  for (const n of names)
    await run('boot', 'cp', ['-a', '--no-preserve=ownership', join(fw, n), boot], process.env);
  // Debian keeps kernels in /boot; take the newest if the firmware hook did not copy them.
  const bootDir = await readdir(join(root, 'boot')).catch(() => [] as string[]);
  for (const [want, prefix] of [
    ['vmlinuz', 'vmlinuz-'],
    ['initrd.img', 'initrd.img-'],
  ] as const) {
    if (names.includes(want)) continue;
    const cand = bootDir
      .filter((n) => n.startsWith(prefix))
      .sort()
      .pop();
    if (cand) await copyFile(join(root, 'boot', cand), join(boot, want));
  }
  if (profile.kind === 'uboot-ab-mbr') {
    for (const f of ['MLO', 'u-boot.img']) {
      const src = join(root, 'usr/lib/u-boot/am335x_evm', f);
      if ((await readdir(boot)).includes(f)) continue;
      await copyFile(src, join(boot, f)).catch(() => undefined);
    }
  }
  const have = new Set(await readdir(boot));
  const missing = profile.requiredBootFiles.filter((f) => !have.has(f));
  if (missing.length) {
    throw new ImageError(
      'IMAGE_ERR_BOOT_FILES',
      `boot: the base root file system lacks ${missing.join(', ')} (looked in /boot/firmware and /boot)`,
    );
  }
  const bootconfig = join(input, 'bootconfig');
  await mkdir(bootconfig, { recursive: true });
  const settingsText = renderSettingsTemplate(o.board.model);
  if (profile.kind === 'rpi-ab-gpt') {
    await writeText(join(boot, 'config.txt'), piConfigTxt(profile));
    await writeText(join(boot, 'cmdline.txt'), piCmdline(profile, 'a'));
    await writeText(join(input, 'slot-b/cmdline.txt'), piCmdline(profile, 'b'));
    await writeText(join(bootconfig, 'autoboot.txt'), piAutoboot(profile));
    await writeText(join(bootconfig, SETTINGS_FILE), settingsText);
  } else {
    await writeText(join(boot, SETTINGS_FILE), settingsText);
  }
  await clampTree(input, o.sourceDateEpoch);
  return { boot: (await readdir(boot)).sort(), bootconfig: (await readdir(bootconfig)).sort() };
}

// ---- step 5: ext4 change and access times ----

/** Used inode numbers from dumpe2fs's per-group "Free inodes:" ranges. */
export function usedInodes(dumpe2fs: string): number[] {
  const total = Number(/Inode count:\s+(\d+)/.exec(dumpe2fs)?.[1] ?? '0');
  const perGroup = Number(/Inodes per group:\s+(\d+)/.exec(dumpe2fs)?.[1] ?? '0');
  if (!total || !perGroup)
    throw new ImageError('IMAGE_ERR_TOOL_FAILED', 'clamp: dumpe2fs output without inode counts');
  const free = new Set<number>();
  const re = /^\s+Free inodes: ?(.*)$/gm;
  for (let m = re.exec(dumpe2fs); m; m = re.exec(dumpe2fs)) {
    for (const part of (m[1] ?? '').split(',')) {
      const r = /(\d+)(?:-(\d+))?/.exec(part.trim());
      if (!r) continue;
      const a = Number(r[1]);
      const z = Number(r[2] ?? r[1]);
      for (let i = a; i <= z; i++) free.add(i);
    }
  }
  const used: number[] = [];
  for (let i = 1; i <= total; i++) if (!free.has(i)) used.push(i);
  return used;
}

async function clampExt4Times(
  image: string,
  sde: number,
  env: NodeJS.ProcessEnv,
  work: string,
): Promise<number> {
  const dump = await run('clamp', 'dumpe2fs', [image], env);
  const ts = fsTimestamp(sde);
  const used = usedInodes(dump).filter((i) => i === 2 || i >= 11);
  const cmds = used
    .map(
      (i) =>
        `sif <${i}> ctime ${ts}\nsif <${i}> ctime_extra 0\nsif <${i}> atime ${ts}\nsif <${i}> atime_extra 0\n`,
    )
    .join('');
  const file = join(work, `${basename(image)}.debugfs`);
  await writeFile(file, cmds);
  await run('clamp', 'debugfs', ['-w', '-f', file, image], env);
  await run('clamp', 'debugfs', ['-w', '-R', `ssv wtime ${ts}`, image], env);
  return used.length;
}

// ---- the build ----

export async function buildImage(o: BuildOptions): Promise<BuildResult> {
  const log = o.logger ?? silentLogger;
  const stepsMs: Record<string, number> = {};
  let t = performance.now();
  const lap = (name: string): void => {
    const now = performance.now();
    stepsMs[name] = Math.round(now - t);
    log.info('image_step', { step: name, ms: stepsMs[name] });
    t = now;
  };
  const missing = await missingTools();
  if (missing.length)
    throw new ImageError(
      'IMAGE_ERR_TOOL_MISSING',
      `missing tools: ${missing.join(', ')} (apt-get install genimage mtools dosfstools e2fsprogs fakeroot)`,
    );
  const profile = imageProfile(o.board);
  // A card-CPU node_modules carrying a host/macOS/Windows add-on is refused before anything is written.
  if (o.nativeModules) await assertNativeTree(o.nativeModules, profile.arch, '--native-modules');
  const sizes = { ...DEFAULT_SIZES, ...o.sizes };
  const env = toolEnv(o.sourceDateEpoch);
  const outDir = resolve(o.outDir);
  const work = resolve(o.workDir ?? join(outDir, '.work'));
  await rm(work, { recursive: true, force: true });
  const overlay = join(work, 'overlay');
  const root = join(work, 'root');
  const input = join(work, 'input');
  const fsOut = join(work, 'fs');
  const diskOut = join(work, 'disk');
  const state = join(work, 'fakeroot.state');
  for (const d of [
    overlay,
    root,
    input,
    fsOut,
    diskOut,
    join(work, 'tmp'),
    join(work, 'tmp2'),
    join(work, 'empty'),
    outDir,
  ])
    await mkdir(d, { recursive: true });
  try {
    await stat(o.baseTarball);
  } catch (err) {
    throw new ImageError('IMAGE_ERR_BASE', `base tarball ${o.baseTarball} not found`, { cause: err });
  }

  const runtime = await stageOverlay(o, profile, overlay);
  lap('stage');

  // Base + overlay in one fakeroot session: the base's owners and device nodes are kept,
  // everything we add belongs to root, the host keys and machine-id from the base are dropped.
  const sh = [
    'set -e',
    'tar -xpf "$1" -C "$2" --numeric-owner',
    'rm -f "$2"/etc/ssh/ssh_host_*',
    'tar -C "$3" --owner=0 --group=0 --numeric-owner -cf - . | tar -C "$2" -xpf - --numeric-owner',
    'chmod 0700 "$2/var/lib/qperiph"',
  ].join('\n');
  await writeFile(state, '');
  await run(
    'root',
    'fakeroot',
    ['-i', state, '-s', state, '--', 'sh', '-c', sh, 'sh', resolve(o.baseTarball), root, overlay],
    env,
  );
  await clampTree(root, o.sourceDateEpoch);
  lap('root');

  const entries = await stageBoot(o, profile, root, input);
  lap('boot');

  const systemMiB = sizes.systemMiB || Math.ceil(((await treeFootprint(root)) * 1.25) / 1048576) + 32;
  const fsCfg = join(work, 'filesystems.cfg');
  await writeFile(
    fsCfg,
    genimageFsConfig({
      profile,
      sizes: { ...sizes, systemMiB },
      rootDir: root,
      bootEntries: entries.boot,
      bootconfigEntries: entries.bootconfig,
      fsTimestamp: fsTimestamp(o.sourceDateEpoch),
    }),
  );
  await run(
    'fs',
    'fakeroot',
    [
      '-i',
      state,
      '--',
      'genimage',
      '--config',
      fsCfg,
      '--rootpath',
      join(work, 'empty'),
      '--inputpath',
      input,
      '--outputpath',
      fsOut,
      '--tmppath',
      join(work, 'tmp'),
    ],
    env,
  );
  lap('fs');

  for (const img of ['system.ext4', 'persistent.ext4'])
    await clampExt4Times(join(fsOut, img), o.sourceDateEpoch, env, work);
  lap('clamp');

  if (profile.kind === 'uboot-ab-mbr') {
    const vars = ubootEnvVars(profile);
    await writeFile(
      join(fsOut, 'uboot-env.bin'),
      encodeUbootEnv(vars, { size: UBOOT_ENV.size, redundant: true, flags: 1 }),
    );
    await writeFile(
      join(fsOut, 'uboot-env-redund.bin'),
      encodeUbootEnv(vars, { size: UBOOT_ENV.size, redundant: true, flags: 0 }),
    );
  }
  const cardName = `qperiph-${o.board.id}-${o.version}.img`;
  const diskCfg = join(work, 'disk.cfg');
  await writeFile(diskCfg, genimageDiskConfig(profile, cardName));
  await run(
    'disk',
    'genimage',
    [
      '--config',
      diskCfg,
      '--rootpath',
      join(work, 'empty'),
      '--inputpath',
      fsOut,
      '--outputpath',
      diskOut,
      '--tmppath',
      join(work, 'tmp2'),
    ],
    env,
  );
  lap('disk');

  // Move the results out, hash them, write the manifest.
  const keep = [
    'boot.vfat',
    'system.ext4',
    'persistent.ext4',
    ...(profile.kind === 'rpi-ab-gpt' ? ['bootconfig.vfat', 'boot-b.vfat'] : ['uboot-env.bin']),
  ].sort();
  const files: ImageFileInfo[] = [];
  for (const n of [...keep, cardName]) {
    const src = join(n === cardName ? diskOut : fsOut, n);
    const dst = join(outDir, n);
    await rm(dst, { force: true });
    await run('manifest', 'mv', [src, dst], process.env);
    files.push({ name: n, size: (await stat(dst)).size, sha256: await sha256File(dst) });
  }
  lap('manifest');

  const bundle = await emitBundle({
    outDir,
    board: o.board,
    version: o.version,
    sourceDateEpoch: o.sourceDateEpoch,
    bootImage: join(outDir, 'boot.vfat'),
    systemImage: join(outDir, 'system.ext4'),
    signing: o.signing,
  });
  lap('bundle');

  const manifest = {
    format: 'qperiph-image-manifest',
    board: o.board.id,
    model: o.board.model,
    layout: profile.kind,
    arch: profile.arch,
    version: o.version,
    sourceDateEpoch: o.sourceDateEpoch,
    partitions: profile.partitions,
    files,
    runtime: {
      files: runtime.files,
      bytes: runtime.bytes,
      droppedNative: runtime.droppedNative.length,
      missingNative: runtime.missingNative,
    },
    bundle: {
      status: bundle.status,
      file: bundle.file ? basename(bundle.file) : null,
      sha256: bundle.sha256 ?? null,
    },
  };
  await writeFile(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  if (!o.keepWork) await rm(work, { recursive: true, force: true });
  log.info('image_built', {
    board: o.board.id,
    card: cardName,
    ms: Object.values(stepsMs).reduce((a, b) => a + b, 0),
  });
  return {
    board: o.board.id,
    layout: profile.kind,
    card: join(outDir, cardName),
    files,
    runtime,
    bundle,
    stepsMs,
  };
}

/** Read a tarball's file names (for tests and `inspect`). */
export async function tarNames(tarball: string): Promise<string[]> {
  return (await run('inspect', 'tar', ['-tf', tarball], process.env)).split('\n').filter(Boolean);
}
