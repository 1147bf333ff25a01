/**
 * U-Boot environment blobs (pure codec): the bytes `fw_setenv` and U-Boot
 * read from the raw environment area of the card.
 *
 *   plain:     u32 LE CRC-32 of the data area | data area
 *   redundant: u32 LE CRC-32 of the data area | u8 flags | data area
 *   data area: "name=value\0" ... "\0", padded with 0xff to the blob size
 */
import { ImageError } from './errors.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** IEEE 802.3 CRC-32 (the one zlib and U-Boot use). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++)
    c = (CRC_TABLE[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface UbootEnvOptions {
  /** Total blob size in bytes (CONFIG_ENV_SIZE), e.g. 0x20000. */
  size: number;
  /** Redundant layout (adds the flags byte). */
  redundant: boolean;
  /** Flags byte of a redundant copy; the copy with the higher counter wins (default 1). */
  flags?: number;
}

/** Encode variables (sorted by name, so the bytes are reproducible). */
export function encodeUbootEnv(vars: Record<string, string>, o: UbootEnvOptions): Buffer {
  const header = o.redundant ? 5 : 4;
  const parts: Buffer[] = [];
  for (const name of Object.keys(vars).sort()) {
    const value = vars[name] as string;
    if (name === '' || /[=\0\s]/.test(name))
      throw new ImageError('IMAGE_ERR_UBOOT_ENV', `bad variable name '${name}'`);
    if (value.includes('\0'))
      throw new ImageError('IMAGE_ERR_UBOOT_ENV', `variable ${name} holds a NUL byte`);
    parts.push(Buffer.from(`${name}=${value}\0`, 'utf8'));
  }
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  if (body.length > o.size - header) {
    throw new ImageError(
      'IMAGE_ERR_UBOOT_ENV',
      `environment needs ${body.length} bytes, only ${o.size - header} fit`,
    );
  }
  const blob = Buffer.alloc(o.size, 0xff);
  body.copy(blob, header);
  blob.writeUInt32LE(crc32(blob.subarray(header)), 0);
  if (o.redundant) blob[4] = o.flags ?? 1;
  return blob;
}

/** Decode a blob; throws IMAGE_ERR_UBOOT_ENV (with the byte offset) on a CRC or framing error. */
export function decodeUbootEnv(
  blob: Uint8Array,
  redundant: boolean,
): { vars: Record<string, string>; flags: number | null } {
  const header = redundant ? 5 : 4;
  if (blob.length <= header)
    throw new ImageError('IMAGE_ERR_UBOOT_ENV', 'environment blob too short', { offset: 0 });
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const want = b.readUInt32LE(0);
  const got = crc32(b.subarray(header));
  if (want !== got)
    throw new ImageError(
      'IMAGE_ERR_UBOOT_ENV',
      `CRC mismatch (stored ${want.toString(16)}, computed ${got.toString(16)})`,
      { offset: 0 },
    );
  const vars: Record<string, string> = {};
  let pos = header;
  while (pos < b.length && b[pos] !== 0) {
    const end = b.indexOf(0, pos);
    if (end < 0) throw new ImageError('IMAGE_ERR_UBOOT_ENV', 'unterminated variable', { offset: pos });
    const entry = b.subarray(pos, end).toString('utf8');
    const eq = entry.indexOf('=');
    if (eq <= 0)
      throw new ImageError(
        'IMAGE_ERR_UBOOT_ENV',
        `entry without '=': ${JSON.stringify(entry.slice(0, 40))}`,
        { offset: pos },
      );
    vars[entry.slice(0, eq)] = entry.slice(eq + 1);
    pos = end + 1;
  }
  return { vars, flags: redundant ? (b[4] as number) : null };
}
