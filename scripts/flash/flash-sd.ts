/**
 * Write an image to an SD card, safely: refuse anything that is not a
 * removable block device or that is mounted, show model and size, ask (or
 * --yes), write with progress, read back and compare SHA-256. /sys and /proc
 * come from an injectable root so tests use a fake tree and a plain file.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { ImageError } from '../image/errors.js';

export interface TargetInfo {
  device: string;
  name: string;
  model: string;
  sizeBytes: number;
  removable: boolean;
  mounted: string[];
}

export interface FlashSystem {
  /** Prefix for /sys and /proc ('' on a real system). */
  sysRoot: string;
  /** Treat a regular file as the device (tests); real runs require a block device. */
  allowRegularFile?: boolean;
}

async function text(p: string): Promise<string | null> {
  try {
    return (await readFile(p, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** Describe `/dev/sdX`/`/dev/mmcblkN` from /sys/block/<name> and /proc/mounts. */
export async function inspectTarget(device: string, sys: FlashSystem): Promise<TargetInfo> {
  const st = await stat(device).catch((err: unknown) => {
    throw new ImageError('FLASH_ERR_NOT_BLOCK', `${device}: ${(err as Error).message}`);
  });
  if (!st.isBlockDevice() && !(sys.allowRegularFile && st.isFile()))
    throw new ImageError('FLASH_ERR_NOT_BLOCK', `${device} is not a block device`);
  const name = basename(device);
  const blk = join(sys.sysRoot, 'sys/block', name);
  if ((await text(join(blk, 'size'))) === null) {
    throw new ImageError(
      'FLASH_ERR_NOT_BLOCK',
      `${device} is not a whole disk (no /sys/block/${name}); give the disk, not a partition`,
    );
  }
  const sectors = Number((await text(join(blk, 'size'))) ?? '0');
  const model =
    [
      await text(join(blk, 'device/vendor')),
      await text(join(blk, 'device/model')),
      await text(join(blk, 'device/name')),
    ]
      .filter(Boolean)
      .join(' ') || 'unknown model';
  const removable = (await text(join(blk, 'removable'))) === '1';
  const mounts = (await text(join(sys.sysRoot, 'proc/mounts'))) ?? '';
  const mounted = mounts
    .split('\n')
    .map((l) => l.split(' '))
    .filter(
      ([src]) =>
        src !== undefined &&
        (src === device || (src.startsWith(device) && /^p?\d+$/.test(src.slice(device.length)))),
    )
    .map(([src, dir]) => `${src} on ${dir}`);
  return { device, name, model, sizeBytes: sectors * 512, removable, mounted };
}

/** The refusals, in order. Pure. */
export function checkTarget(t: TargetInfo, imageBytes: number): void {
  if (!t.removable)
    throw new ImageError(
      'FLASH_ERR_NOT_REMOVABLE',
      `${t.device} (${t.model}) is not removable: refusing to write to a fixed disk`,
    );
  if (t.mounted.length)
    throw new ImageError(
      'FLASH_ERR_MOUNTED',
      `${t.device} is mounted (${t.mounted.join(', ')}): unmount it first`,
    );
  if (t.sizeBytes < imageBytes)
    throw new ImageError(
      'FLASH_ERR_TOO_SMALL',
      `${t.device} holds ${t.sizeBytes} bytes, the image needs ${imageBytes}`,
    );
}

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export interface FlashOptions extends FlashSystem {
  image: string;
  device: string;
  yes: boolean;
  /** Answer to the confirmation question (tests); default reads stdin. */
  confirm?: (question: string) => Promise<string>;
  progress?: (phase: 'write' | 'verify', done: number, total: number) => void;
  out?: (line: string) => void;
  blockSize?: number;
}

export async function flashImage(o: FlashOptions): Promise<{ sha256: string; bytes: number }> {
  const out = o.out ?? ((l: string) => process.stderr.write(`${l}\n`));
  const total = (await stat(o.image)).size;
  const target = await inspectTarget(o.device, o);
  checkTarget(target, total);
  out(`target: ${target.device}  ${target.model}  ${formatBytes(target.sizeBytes)} (removable, not mounted)`);
  out(`image:  ${o.image}  ${formatBytes(total)}`);
  if (!o.yes) {
    const ask =
      o.confirm ??
      (async (q: string) => {
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        try {
          return await rl.question(q);
        } finally {
          rl.close();
        }
      });
    const answer = (
      await ask(
        `Everything on ${target.device} will be lost. Type the device name (${target.name}) to continue: `,
      )
    ).trim();
    if (answer !== target.name && answer !== target.device)
      throw new ImageError('FLASH_ERR_DECLINED', 'not confirmed: nothing written');
  }
  const bs = o.blockSize ?? 4 << 20;
  const buf = Buffer.allocUnsafe(bs);
  const hash = createHash('sha256');
  const src = await open(o.image, 'r');
  const dst = await open(o.device, 'r+');
  try {
    for (let pos = 0; pos < total;) {
      const { bytesRead } = await src.read(buf, 0, Math.min(bs, total - pos), pos);
      if (bytesRead === 0) throw new ImageError('FLASH_ERR_VERIFY', `${o.image} shrank while writing`);
      hash.update(buf.subarray(0, bytesRead));
      await dst.write(buf, 0, bytesRead, pos);
      pos += bytesRead;
      o.progress?.('write', pos, total);
    }
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
  const want = hash.digest('hex');
  // Read back exactly the image's length and compare.
  const back = createHash('sha256');
  const rd = await open(o.device, 'r');
  try {
    for (let pos = 0; pos < total;) {
      const { bytesRead } = await rd.read(buf, 0, Math.min(bs, total - pos), pos);
      if (bytesRead === 0) break;
      back.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      o.progress?.('verify', pos, total);
    }
  } finally {
    await rd.close();
  }
  const got = back.digest('hex');
  if (got !== want)
    throw new ImageError('FLASH_ERR_VERIFY', `read-back SHA-256 ${got} differs from the image's ${want}`);
  out(`written and verified: sha256 ${want}`);
  return { sha256: want, bytes: total };
}

export const FLASH_HELP = `Usage: scripts/flash-sd IMAGE DEVICE [--yes]

Writes IMAGE (a qperiph .img) to the SD card DEVICE (a whole disk, e.g.
/dev/sdb or /dev/mmcblk0). Refuses disks that are not removable or have a
mounted partition, shows the card's model and size, asks you to type the device
name (unless --yes), shows progress, then reads the card back and compares
SHA-256. Needs write access to the device (usually root).
`;

export async function runFlashCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(FLASH_HELP);
    return 0;
  }
  const pos = argv.filter((a) => !a.startsWith('-'));
  const flags = argv.filter((a) => a.startsWith('-'));
  const unknown = flags.filter((f) => f !== '--yes' && f !== '-y');
  if (pos.length !== 2 || unknown.length) {
    process.stderr.write(
      `flash-sd: ${unknown.length ? `unknown option ${unknown[0]}` : 'need IMAGE and DEVICE'}\n${FLASH_HELP}`,
    );
    return 2;
  }
  let last = -1;
  try {
    await flashImage({
      image: pos[0] as string,
      device: pos[1] as string,
      yes: flags.length > 0,
      sysRoot: env['QPERIPH_FLASH_SYSROOT'] ?? '',
      progress: (phase, done, total) => {
        const pct = Math.floor((done * 100) / total);
        if (pct !== last || done === total) {
          last = pct;
          process.stderr.write(
            `\r${phase} ${pct}% (${formatBytes(done)} of ${formatBytes(total)})${done === total ? '\n' : ''}`,
          );
          if (done === total) last = -1;
        }
      },
    });
    return 0;
  } catch (err) {
    process.stderr.write(`flash-sd: ${(err as Error).message}\n`);
    return err instanceof ImageError && err.code !== 'FLASH_ERR_VERIFY' ? 2 : 1;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  runFlashCli(process.argv.slice(2)).then((c) => (process.exitCode = c));
}
