/**
 * Card layouts per board (pure): which partitions, their fixed UUIDs, the
 * genimage configurations, and the small boot files the build writes
 * (autoboot.txt, config.txt, cmdline.txt, the U-Boot environment). No I/O.
 */
import { createHash } from 'node:crypto';
import type { BoardConfig } from '../../firmware/config/board-types.js';
import { renderAutoboot } from '../../firmware/update/boot-selector.js';
import { ImageError } from './errors.js';

export type LayoutKind = 'rpi-ab-gpt' | 'uboot-ab-mbr';
export type DebianArch = 'arm64' | 'armhf';

export interface PartitionSpec {
  /** GPT partition name (Pi) or our name for an MBR partition (BeagleBone). */
  name: string;
  /** The file-system image this partition holds. */
  image: 'bootconfig.vfat' | 'boot.vfat' | 'system.ext4' | 'persistent.ext4';
  /** 1-based partition number on the card. */
  number: number;
  uuid: string;
}

export interface ImageProfile {
  board: string;
  kind: LayoutKind;
  arch: DebianArch;
  partitions: PartitionSpec[];
  diskUuid: string;
  /** MBR disk signature (BeagleBone), 8 hex digits. */
  diskSignature: string;
  /** vfat volume ids (mkdosfs -i), 8 hex digits. */
  vfatIds: { bootconfig: string; boot: string };
  /** ext4 UUIDs and directory hash seeds. */
  ext4: { system: { uuid: string; hashSeed: string }; persistent: { uuid: string; hashSeed: string } };
  /** Files that must be on the boot partition (taken from the base root file system). */
  requiredBootFiles: string[];
  /** Device tree overlay for the audio HAT (Pi). */
  dtoverlay: string | null;
}

export interface ImageSizes {
  bootconfigMiB: number;
  bootMiB: number;
  /** 0 = computed from the content (+25 % and 32 MiB headroom). */
  systemMiB: number;
  persistentMiB: number;
}

export const DEFAULT_SIZES: Readonly<ImageSizes> = Object.freeze({
  bootconfigMiB: 32,
  bootMiB: 256,
  systemMiB: 0,
  persistentMiB: 256,
});

/** U-Boot environment on the BeagleBone card: two raw copies before the first partition. */
export const UBOOT_ENV = Object.freeze({ offset: 0x260000, redundOffset: 0x280000, size: 0x20000 });

/** A fixed, name-derived UUID (version 4 and variant bits set), so every build writes the same one. */
export function stableUuid(seed: string, what: string): string {
  const h = createHash('sha256').update(`${seed}\0${what}`).digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x40;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function stableHex8(seed: string, what: string): string {
  return createHash('sha256').update(`${seed}\0${what}`).digest('hex').slice(0, 8);
}

/** The layout for a board. `seed` (default: the board id) changes every UUID at once. */
export function imageProfile(board: Readonly<BoardConfig>, seed: string = board.id): ImageProfile {
  if (board.isVirtual || board.boot.selector === 'directory') {
    throw new ImageError(
      'IMAGE_ERR_BOARD',
      `board '${board.id}' is virtual (boot selector 'directory'): it has no SD-card image`,
    );
  }
  const u = (w: string): string => stableUuid(seed, w);
  const common = {
    board: board.id,
    diskUuid: u('disk'),
    diskSignature: stableHex8(seed, 'mbr'),
    vfatIds: { bootconfig: stableHex8(seed, 'vfat-bootconfig'), boot: stableHex8(seed, 'vfat-boot') },
    ext4: {
      system: { uuid: u('ext4-system'), hashSeed: u('ext4-system-hash') },
      persistent: { uuid: u('ext4-persistent'), hashSeed: u('ext4-persistent-hash') },
    },
  };
  if (board.boot.selector === 'rpi-tryboot') {
    const names = ['bootconfig', 'boot_a', 'boot_b', 'system_a', 'system_b', 'persistent'] as const;
    const imageOf = {
      bootconfig: 'bootconfig.vfat',
      boot_a: 'boot.vfat',
      boot_b: 'boot.vfat',
      system_a: 'system.ext4',
      system_b: 'system.ext4',
      persistent: 'persistent.ext4',
    } as const;
    const overlay = /hifiberry-dacplusadc/.test(board.id) ? 'hifiberry-dacplusadc' : null;
    return {
      ...common,
      kind: 'rpi-ab-gpt',
      arch: 'arm64',
      partitions: names.map((name, i) => ({
        name,
        image: imageOf[name],
        number: i + 1,
        uuid: u(`part-${name}`),
      })),
      requiredBootFiles: ['start4.elf', 'fixup4.dat', 'vmlinuz', 'initrd.img'],
      dtoverlay: overlay,
    };
  }
  // U-Boot: MBR (the AM335x ROM reads MLO from a FAT partition flagged bootable).
  const sig = common.diskSignature;
  const mbr = ['boot', 'system_a', 'system_b', 'persistent'] as const;
  const imageOf = {
    boot: 'boot.vfat',
    system_a: 'system.ext4',
    system_b: 'system.ext4',
    persistent: 'persistent.ext4',
  } as const;
  return {
    ...common,
    kind: 'uboot-ab-mbr',
    arch: board.id.startsWith('beaglebone-black') ? 'armhf' : 'arm64',
    partitions: mbr.map((name, i) => ({
      name,
      image: imageOf[name],
      number: i + 1,
      uuid: `${sig}-0${i + 1}`,
    })),
    requiredBootFiles: ['MLO', 'u-boot.img', 'vmlinuz', 'initrd.img'],
    dtoverlay: null,
  };
}

export function partitionOf(p: ImageProfile, name: string): PartitionSpec {
  const s = p.partitions.find((x) => x.name === name);
  if (!s) throw new ImageError('IMAGE_ERR_BOARD', `layout ${p.kind} has no partition ${name}`);
  return s;
}

// ---- boot files ----

/** Raspberry Pi autoboot.txt on the bootconfig partition: boot_a normally, boot_b on tryboot. */
export function piAutoboot(p: ImageProfile): string {
  return renderAutoboot(partitionOf(p, 'boot_a').number, partitionOf(p, 'boot_b').number);
}

export function piConfigTxt(p: ImageProfile): string {
  return [
    '# Written by the qperiph image build. Same file on boot_a and boot_b.',
    'arm_64bit=1',
    'kernel=vmlinuz',
    'initramfs initrd.img followkernel',
    'enable_uart=1',
    'disable_overscan=1',
    // The HAT's codec replaces the on-board audio.
    'dtparam=audio=off',
    ...(p.dtoverlay ? [`dtoverlay=${p.dtoverlay}`] : []),
    '',
  ].join('\n');
}

/**
 * cmdline.txt: boot_a boots system_a and boot_b boots system_b; the slot name is
 * on the command line for the runtime's boot selector. Identical files on both
 * boot partitions would not work, so the A/B members differ only here.
 */
export function piCmdline(p: ImageProfile, slot: 'a' | 'b'): string {
  const root = partitionOf(p, `system_${slot}`).uuid;
  return `console=serial0,115200 console=tty1 root=PARTUUID=${root} rootfstype=ext4 rootwait rw fsck.repair=yes net.ifnames=0 qperiph.slot=${slot}\n`;
}

/** The U-Boot environment: RAUC-style BOOT_ORDER + attempt counters, matching UbootSelector. */
export function ubootEnvVars(p: ImageProfile): Record<string, string> {
  const root = (s: 'a' | 'b'): string => `PARTUUID=${partitionOf(p, `system_${s}`).uuid}`;
  const pick = (n: 'A' | 'B', s: 'a' | 'b'): string =>
    `if test "\${s}" = "${n}" && test \${BOOT_${n}_LEFT} -gt 0; then setexpr BOOT_${n}_LEFT \${BOOT_${n}_LEFT} - 1; setenv qp_slot ${n}; setenv qp_root ${root(s)}; fi;`;
  const script = [
    'setenv qp_slot;',
    `for s in \${BOOT_ORDER}; do if test -z "\${qp_slot}"; then ${pick('A', 'a')} ${pick('B', 'b')} fi; done;`,
    // Every slot used up: reset the counters and try again from the top.
    'if test -z "${qp_slot}"; then setenv BOOT_A_LEFT 3; setenv BOOT_B_LEFT 3; saveenv; reset; fi;',
    'saveenv;',
    'setenv bootargs console=ttyS0,115200n8 root=${qp_root} rootfstype=ext4 rootwait rw fsck.repair=yes net.ifnames=0 qperiph.slot=${qp_slot};',
    'load mmc 0:1 ${kernel_addr_r} vmlinuz;',
    'load mmc 0:1 ${fdt_addr_r} ${fdtfile};',
    'load mmc 0:1 ${ramdisk_addr_r} initrd.img;',
    'bootz ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr_r}',
  ].join(' ');
  return {
    BOOT_ORDER: 'A B',
    BOOT_A_LEFT: '3',
    BOOT_B_LEFT: '3',
    bootcmd: 'run qperiph_boot',
    bootdelay: '1',
    fdtfile: 'am335x-boneblack.dtb',
    qperiph_boot: script,
  };
}

/** /etc/fw_env.config for fw_printenv/fw_setenv on the device (card = mmcblk0). */
export function fwEnvConfig(): string {
  const h = (n: number): string => `0x${n.toString(16)}`;
  return [
    '# device  offset  size (qperiph image build; must match the U-Boot build)',
    `/dev/mmcblk0 ${h(UBOOT_ENV.offset)} ${h(UBOOT_ENV.size)}`,
    `/dev/mmcblk0 ${h(UBOOT_ENV.redundOffset)} ${h(UBOOT_ENV.size)}`,
    '',
  ].join('\n');
}

/** /etc/fstab of the system partitions (identical in A and B). */
export function fstab(p: ImageProfile): string {
  const lines = [
    '# qperiph image build',
    `PARTUUID=${partitionOf(p, 'persistent').uuid} /persistent ext4 defaults,noatime 0 2`,
  ];
  if (p.kind === 'rpi-ab-gpt')
    lines.push(
      `PARTUUID=${partitionOf(p, 'bootconfig').uuid} /boot/bootconfig vfat defaults,noatime,umask=0077 0 2`,
    );
  else
    lines.push(`PARTUUID=${partitionOf(p, 'boot').uuid} /boot/firmware vfat defaults,noatime,umask=0077 0 2`);
  lines.push(
    '/persistent/qperiph /var/lib/qperiph none bind,x-systemd.requires-mounts-for=/persistent 0 0',
    '',
  );
  return lines.join('\n');
}

// ---- genimage ----

const q = (s: string): string => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;

export interface FsConfigInput {
  profile: ImageProfile;
  sizes: ImageSizes & { systemMiB: number };
  /** Absolute directories: the staged root file system and the boot/bootconfig trees. */
  rootDir: string;
  /** Top-level names under `boot/` and `bootconfig/` in the input path. */
  bootEntries: string[];
  bootconfigEntries: string[];
  /** genimage fs-timestamp (YYYYMMDDhhmmss, UTC). */
  fsTimestamp: string;
}

function vfatBlock(
  name: string,
  label: string,
  volId: string,
  dir: string,
  entries: string[],
  mib: number,
  replace: Record<string, string> = {},
): string {
  const files = entries
    .map((e) => `    file ${q(e)} { image = ${q(replace[e] ?? `${dir}/${e}`)} }`)
    .join('\n');
  return `image ${name} {\n  vfat {\n    label = ${q(label)}\n    extraargs = ${q(`-i ${volId} --invariant`)}\n${files}\n  }\n  size = ${mib}M\n}\n`;
}

function ext4Block(
  name: string,
  label: string,
  ids: { uuid: string; hashSeed: string },
  mib: number,
  ts: string,
  src: string | null,
): string {
  const content = src ? `  srcpath = ${q(src)}\n` : '  empty = true\n';
  return (
    `image ${name} {\n${content}  ext4 {\n    use-mke2fs = true\n    label = ${q(label)}\n    fs-timestamp = ${q(ts)}\n` +
    `    extraargs = ${q(`-U ${ids.uuid} -E hash_seed=${ids.hashSeed} -m 1`)}\n  }\n  size = ${mib}M\n}\n`
  );
}

/** Phase 1: the file-system images (the same files feed the card and the update bundle). */
export function genimageFsConfig(i: FsConfigInput): string {
  const p = i.profile;
  const parts = [
    vfatBlock('boot.vfat', 'BOOT', p.vfatIds.boot, 'boot', i.bootEntries, i.sizes.bootMiB),
    ext4Block('system.ext4', 'system', p.ext4.system, i.sizes.systemMiB, i.fsTimestamp, i.rootDir),
    ext4Block('persistent.ext4', 'persistent', p.ext4.persistent, i.sizes.persistentMiB, i.fsTimestamp, null),
  ];
  if (p.kind === 'rpi-ab-gpt') {
    parts.unshift(
      vfatBlock(
        'bootconfig.vfat',
        'BOOTCONFIG',
        p.vfatIds.bootconfig,
        'bootconfig',
        i.bootconfigEntries,
        i.sizes.bootconfigMiB,
      ),
    );
    // boot_b: the same files, except cmdline.txt names system_b.
    parts.splice(
      2,
      0,
      vfatBlock('boot-b.vfat', 'BOOT', p.vfatIds.boot, 'boot', i.bootEntries, i.sizes.bootMiB, {
        'cmdline.txt': 'slot-b/cmdline.txt',
      }),
    );
  }
  return parts.join('\n');
}

/**
 * Phase 2: the card. For the Pi the two boot partitions differ (cmdline.txt), so
 * `boot_b` takes `boot-b.vfat`; the system members are one and the same file.
 */
export function genimageDiskConfig(p: ImageProfile, outName: string): string {
  const lines: string[] = [];
  if (p.kind === 'rpi-ab-gpt') {
    lines.push(
      `image ${outName} {`,
      '  hdimage {',
      '    partition-table-type = "gpt"',
      `    disk-uuid = ${q(p.diskUuid)}`,
      '    align = 4M',
      '  }',
    );
    for (const s of p.partitions) {
      const img = s.name === 'boot_b' ? 'boot-b.vfat' : s.image;
      const type = s.image.endsWith('.vfat') ? 'F' : 'L';
      lines.push(
        `  partition ${s.name} {`,
        `    image = ${q(img)}`,
        `    partition-type-uuid = ${q(type)}`,
        `    partition-uuid = ${q(s.uuid)}`,
        '  }',
      );
    }
  } else {
    lines.push(
      `image ${outName} {`,
      '  hdimage {',
      '    partition-table-type = "mbr"',
      `    disk-signature = 0x${p.diskSignature}`,
      '    align = 4M',
      '  }',
    );
    lines.push(
      '  partition uboot-env {',
      '    in-partition-table = false',
      `    offset = ${UBOOT_ENV.offset}`,
      '    image = "uboot-env.bin"',
      '  }',
    );
    lines.push(
      '  partition uboot-env-redund {',
      '    in-partition-table = false',
      `    offset = ${UBOOT_ENV.redundOffset}`,
      '    image = "uboot-env-redund.bin"',
      '  }',
    );
    for (const s of p.partitions) {
      const boot = s.image === 'boot.vfat';
      lines.push(
        `  partition ${s.name} {`,
        `    image = ${q(s.image)}`,
        `    partition-type = ${boot ? '0xc' : '0x83'}`,
        ...(boot ? ['    bootable = true'] : []),
        '  }',
      );
    }
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** YYYYMMDDhhmmss (UTC) of a Unix time, as genimage's fs-timestamp wants. */
export function fsTimestamp(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}
