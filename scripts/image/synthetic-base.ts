/**
 * A small stand-in for the Debian base root file system (CI and benchmarks):
 * a few directories, /etc/os-release, placeholder node and boot files. It lets
 * the whole pipeline run in seconds; it does not boot.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile, utimes, readdir, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LayoutKind } from './layout.js';

const exec = promisify(execFile);

export async function makeSyntheticBase(tarball: string, kind: LayoutKind, sde = 1700000000): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-synth-'));
  try {
    const put = async (p: string, text: string, mode = 0o644): Promise<void> => {
      await mkdir(join(dir, p, '..'), { recursive: true });
      await writeFile(join(dir, p), text, { mode });
    };
    for (const d of [
      'bin',
      'sbin',
      'lib/systemd/system',
      'usr/bin',
      'usr/sbin',
      'var/lib',
      'tmp',
      'root',
      'etc/ssh',
      'dev',
      'proc',
      'sys',
      'run',
      'boot/firmware',
    ]) {
      await mkdir(join(dir, d), { recursive: true });
    }
    await put(
      'etc/os-release',
      'PRETTY_NAME="Debian GNU/Linux 13 (trixie) [synthetic qperiph test base]"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nID=debian\n',
    );
    await put('usr/bin/node', '#!/bin/sh\necho "synthetic base: no node here" >&2\nexit 1\n', 0o755);
    await put('etc/ssh/ssh_host_ed25519_key', 'not a key: the build must remove this\n', 0o600);
    await put('etc/machine-id', '0123456789abcdef0123456789abcdef\n');
    await put(
      'lib/systemd/system/ptp4l@.service',
      '[Service]\nExecStart=/usr/sbin/ptp4l -f /etc/linuxptp/ptp4l.conf -i %I\n',
    );
    await put(
      'lib/systemd/system/systemd-networkd.service',
      '[Service]\nExecStart=/lib/systemd/systemd-networkd\n',
    );
    if (kind === 'rpi-ab-gpt') {
      for (const f of ['start4.elf', 'fixup4.dat', 'bcm2711-rpi-4-b.dtb', 'vmlinuz', 'initrd.img'])
        await put(`boot/firmware/${f}`, `synthetic ${f}\n`);
      await put('boot/firmware/overlays/hifiberry-dacplusadc.dtbo', 'synthetic overlay\n');
    } else {
      await put('boot/vmlinuz-6.12.0-armmp', 'synthetic kernel\n');
      await put('boot/initrd.img-6.12.0-armmp', 'synthetic initrd\n');
      await put('usr/lib/u-boot/am335x_evm/MLO', 'synthetic MLO\n');
      await put('usr/lib/u-boot/am335x_evm/u-boot.img', 'synthetic u-boot\n');
      await put('boot/firmware/am335x-boneblack.dtb', 'synthetic dtb\n');
    }
    const walk = async (d: string): Promise<void> => {
      for (const n of await readdir(d)) {
        const p = join(d, n);
        if ((await lstat(p)).isDirectory()) await walk(p);
        await utimes(p, sde, sde);
      }
    };
    await walk(dir);
    await exec('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      `--mtime=@${sde}`,
      '-C',
      dir,
      '-cf',
      tarball,
      '.',
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
