/**
 * Native add-ons and the card's CPU: what a `.node` file is, judged only from
 * its header bytes (pure), and the guard that refuses a tree carrying any
 * add-on the card cannot load (host builds, macOS or Windows binaries).
 */
import { open, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from './errors.js';
import type { DebianArch } from './layout.js';

/** ELF e_machine values of the card CPUs. */
export const ELF_MACHINE: Readonly<Record<DebianArch, number>> = Object.freeze({ arm64: 183, armhf: 40 });
const ELF_CLASS: Readonly<Record<DebianArch, number>> = Object.freeze({ arm64: 2, armhf: 1 });

const MACHINE_NAMES: Readonly<Record<number, string>> = Object.freeze({
  3: 'x86',
  8: 'MIPS',
  20: 'PowerPC',
  40: 'ARM',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
});

export interface BinaryInfo {
  format: 'elf' | 'mach-o' | 'pe' | 'unknown';
  /** ELF only: 32 or 64. */
  bits?: 32 | 64;
  /** ELF only: e_machine. */
  machine?: number;
  /** For people: "ELF 64-bit AArch64", "Mach-O", "PE (Windows)". */
  label: string;
}

/** What a binary is, from its first 20 bytes. Pure. */
export function describeBinary(head: Uint8Array): BinaryInfo {
  const b = Buffer.from(head.buffer, head.byteOffset, head.length);
  if (b.length >= 4) {
    const magic = b.readUInt32BE(0);
    if ([0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, 0xcafebabe].includes(magic))
      return { format: 'mach-o', label: 'Mach-O' };
  }
  if (b.length >= 2 && b[0] === 0x4d && b[1] === 0x5a) return { format: 'pe', label: 'PE (Windows)' };
  if (b.length < 20 || b.readUInt32BE(0) !== 0x7f454c46)
    return { format: 'unknown', label: b.length < 20 ? 'too short for a binary' : 'not a binary' };
  const bits = b[4] === 1 ? 32 : b[4] === 2 ? 64 : undefined;
  if (bits === undefined || (b[5] !== 1 && b[5] !== 2))
    return { format: 'unknown', label: 'ELF with a bad class or byte order' };
  const machine = b[5] === 1 ? b.readUInt16LE(18) : b.readUInt16BE(18);
  return {
    format: 'elf',
    bits,
    machine,
    label: `ELF ${bits}-bit ${MACHINE_NAMES[machine] ?? `machine ${machine}`}`,
  };
}

/**
 * Whether a native add-on is built for the card's CPU (pure): 'match' only for
 * a Linux ELF of the right class and e_machine (arm64: 64-bit, 183; armhf: 32-bit, 40).
 */
export function nativeBinaryFits(head: Uint8Array, arch: DebianArch): 'match' | 'foreign' {
  const info = describeBinary(head);
  return info.format === 'elf' &&
    info.machine === ELF_MACHINE[arch] &&
    info.bits === (ELF_CLASS[arch] === 2 ? 64 : 32)
    ? 'match'
    : 'foreign';
}

/** The first 20 bytes of a file (no more is read). */
export async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(20);
    const { bytesRead } = await fh.read(buf, 0, 20, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export interface NativeScan {
  /** `.node` files built for the card, relative to the scanned dir, sorted. */
  fitting: string[];
  /** `.node` files the card cannot load, with what they are. */
  foreign: Array<{ file: string; what: string }>;
}

/** Every `.node` file under `dir` (symlinks not followed), sorted, judged for `arch`. */
export async function scanNativeTree(dir: string, arch: DebianArch): Promise<NativeScan> {
  const scan: NativeScan = { fitting: [], foreign: [] };
  const walk = async (rel: string): Promise<void> => {
    for (const n of (await readdir(join(dir, rel))).sort()) {
      const r = rel ? join(rel, n) : n;
      const st = await lstat(join(dir, r));
      if (st.isDirectory()) await walk(r);
      else if (st.isFile() && n.endsWith('.node')) {
        const head = await readHead(join(dir, r));
        if (nativeBinaryFits(head, arch) === 'match') scan.fitting.push(r);
        else scan.foreign.push({ file: r, what: describeBinary(head).label });
      }
    }
  };
  await walk('');
  return scan;
}

/**
 * Refuse a tree that carries an add-on the card cannot load:
 * IMAGE_ERR_NATIVE_FOREIGN, listing every such file. Returns the scan.
 */
export async function assertNativeTree(dir: string, arch: DebianArch, what: string): Promise<NativeScan> {
  const scan = await scanNativeTree(dir, arch);
  if (scan.foreign.length > 0)
    throw new ImageError(
      'IMAGE_ERR_NATIVE_FOREIGN',
      `${what}: ${scan.foreign.length} native add-on(s) not built for ${arch} (${dir}): ${scan.foreign
        .map((f) => `${f.file} (${f.what})`)
        .join(', ')}`,
      { files: scan.foreign.map((f) => f.file) },
    );
  return scan;
}
