/**
 * The real base root file system: Debian trixie for the card's CPU, made by
 * mmdebstrap (foreign CPUs run through qemu-user + binfmt_misc). The mirror is
 * never written into the project: it is read from the host's apt sources at
 * build time, or given with --mirror.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from './errors.js';
import type { ImageProfile } from './layout.js';

/** The first Debian archive URI in apt sources text (one-line .list or deb822 .sources). Pure. */
export function mirrorFromSources(text: string): string | null {
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    let m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m && !/security/.test(m[2] as string) && !/security/.test(m[1] as string))
      return (m[1] as string).replace(/\/$/, '');
    m = /^URIs:\s*(\S+)/i.exec(line);
    if (m && !/security/.test(m[1] as string)) return (m[1] as string).replace(/\/$/, '');
  }
  return null;
}

export async function hostMirror(etc = '/etc/apt'): Promise<string> {
  const files = [join(etc, 'sources.list')];
  const d = await readdir(join(etc, 'sources.list.d')).catch(() => [] as string[]);
  files.push(
    ...d
      .filter((n) => n.endsWith('.list') || n.endsWith('.sources'))
      .sort()
      .map((n) => join(etc, 'sources.list.d', n)),
  );
  for (const f of files) {
    const m = mirrorFromSources(await readFile(f, 'utf8').catch(() => ''));
    if (m) return m;
  }
  throw new ImageError(
    'IMAGE_ERR_MIRROR',
    `no Debian mirror found in ${etc}/sources.list{,.d}: pass --mirror URL`,
  );
}

export const BASE_PACKAGES: Record<ImageProfile['kind'], string[]> = {
  'rpi-ab-gpt': ['raspi-firmware', 'linux-image-arm64'],
  'uboot-ab-mbr': ['u-boot-omap', 'linux-image-armmp', 'libubootenv-tool'],
};

const COMMON = [
  'systemd',
  'systemd-sysv',
  'udev',
  'dbus',
  'systemd-resolved',
  'openssh-server',
  'nodejs',
  'initramfs-tools',
  'ca-certificates',
  'linuxptp',
  'wpasupplicant',
  'alsa-utils',
  'gpiod',
  'iproute2',
];

/** dpkg path filters for the base: written into the base too, so later installs keep them. */
export const DOC_EXCLUDES = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/locale/*',
  'path-include=/usr/share/locale/locale.alias',
];

/** The mmdebstrap command line for a board's base tarball. Pure. */
export function mmdebstrapArgs(
  profile: ImageProfile,
  mirror: string,
  out: string,
  suite = 'trixie',
): string[] {
  return [
    `--architectures=${profile.arch}`,
    '--variant=minbase',
    '--components=main,non-free-firmware',
    `--include=${[...COMMON, ...BASE_PACKAGES[profile.kind]].join(',')}`,
    // dpkg runs emulated: no fsync per file (the tarball is the only output)
    '--dpkgopt=force-unsafe-io',
    // a card has no use for manuals, docs and translations; licences stay
    ...DOC_EXCLUDES.map((e) => `--dpkgopt=${e}`),
    // the image build adds its own; a base must not carry host keys or an identity
    '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_* ; : > "$1"/etc/machine-id',
    // unsafe io was for the build only; the card's own dpkg must fsync (power cuts)
    '--customize-hook=sed -i "/force-unsafe-io/d" "$1"/etc/dpkg/dpkg.cfg.d/99mmdebstrap',
    suite,
    out,
    mirror,
  ];
}
