/**
 * The app payload archive ("QAPPARC1"): a table of contents first, then the
 * file contents in TOC order. The whole TOC is checked (paths, symlink
 * targets, sizes) before a single byte is written anywhere.
 *
 *   0   8  magic "QAPPARC1"
 *   8   4  u32 BE entry count (<= MAX_ENTRIES)
 *   12  4  u32 BE TOC length in bytes (<= MAX_TOC)
 *   16     TOC entries:
 *            u8 type (1 file, 2 directory, 3 symlink), u16 BE mode (0..0o777),
 *            u16 BE path length, path (UTF-8),
 *            file: u64 BE size; symlink: u16 BE target length, target
 *   16+toc file contents concatenated, in TOC order; nothing after them.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, open, readlink, rm, symlink, chmod } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { UpdateError } from './errors.js';

export const APP_MAGIC = Buffer.from('QAPPARC1', 'ascii');
export const MAX_ENTRIES = 100_000;
export const MAX_TOC = 8 * 1024 * 1024;

export type AppEntry =
  | { type: 'file'; path: string; mode: number; size: number }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'symlink'; path: string; mode: number; target: string };

export interface AppToc {
  entries: AppEntry[];
  /** Length of magic + counts + TOC: where file data starts. */
  dataOffset: number;
  /** Total archive length implied by the TOC. */
  totalLength: number;
}

function pathError(msg: string, offset: number): UpdateError {
  return new UpdateError('UPDATE_ERR_PATH', msg, { offset });
}

/** A safe relative path: no absolute, no '..', no '.', no empty component, no NUL. */
export function checkEntryPath(p: string, offset: number): void {
  if (p.length === 0 || p.length > 4096) throw pathError('empty or overlong path', offset);
  if (p.includes('\0') || p.includes('\\')) throw pathError(`forbidden character in '${p}'`, offset);
  if (p.startsWith('/')) throw pathError(`absolute path '${p}'`, offset);
  for (const c of p.split('/')) {
    if (c === '' || c === '.' || c === '..')
      throw pathError(`path traversal or empty component in '${p}'`, offset);
  }
}

/** A symlink must stay inside the slot: relative, and resolving below the root. */
export function checkSymlinkTarget(path: string, target: string, offset: number): void {
  if (target.length === 0 || target.includes('\0'))
    throw pathError(`empty symlink target at '${path}'`, offset);
  if (target.startsWith('/')) throw pathError(`symlink '${path}' points to an absolute path`, offset);
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === '..' || resolved.startsWith('../') || resolved === '.') {
    throw pathError(`symlink '${path}' escapes the slot (${target})`, offset);
  }
}

/** Decode and check the TOC; `bytes` must hold at least the whole TOC. Returns null when more bytes are needed. */
export function decodeAppToc(bytes: Buffer, payloadSize: number): AppToc | null {
  if (bytes.length < 16) return null;
  if (!bytes.subarray(0, 8).equals(APP_MAGIC))
    throw new UpdateError('UPDATE_ERR_ARCHIVE', 'app payload is not a QAPPARC1 archive', { offset: 0 });
  const count = bytes.readUInt32BE(8);
  const tocLen = bytes.readUInt32BE(12);
  if (count > MAX_ENTRIES)
    throw new UpdateError('UPDATE_ERR_ARCHIVE', `too many entries (${count})`, { offset: 8 });
  if (tocLen > MAX_TOC || 16 + tocLen > payloadSize)
    throw new UpdateError('UPDATE_ERR_ARCHIVE', `bad TOC length ${tocLen}`, { offset: 12 });
  if (bytes.length < 16 + tocLen) return null;
  const toc = bytes.subarray(16, 16 + tocLen);
  const entries: AppEntry[] = [];
  const seen = new Map<string, AppEntry['type']>();
  let o = 0;
  let dataLen = 0;
  const need = (n: number): void => {
    if (o + n > toc.length)
      throw new UpdateError('UPDATE_ERR_TRUNCATED', 'TOC entry runs past the TOC', { offset: 16 + o });
  };
  for (let i = 0; i < count; i++) {
    const at = 16 + o;
    need(5);
    const type = toc.readUInt8(o);
    const mode = toc.readUInt16BE(o + 1);
    const plen = toc.readUInt16BE(o + 3);
    o += 5;
    need(plen);
    const path = toc.subarray(o, o + plen).toString('utf8');
    o += plen;
    if (mode > 0o777) throw new UpdateError('UPDATE_ERR_ARCHIVE', `bad mode on '${path}'`, { offset: at });
    checkEntryPath(path, at);
    if (seen.has(path)) throw pathError(`duplicate entry '${path}'`, at);
    // No entry may live below a file or a symlink (writing through a symlink escapes the slot).
    const parts = path.split('/');
    for (let k = 1; k < parts.length; k++) {
      const prefix = parts.slice(0, k).join('/');
      const kind = seen.get(prefix);
      if (kind === 'symlink') throw pathError(`'${path}' lies under symlink '${prefix}'`, at);
      if (kind === 'file') throw pathError(`'${path}' lies under file '${prefix}'`, at);
    }
    if (type === 1) {
      need(8);
      const size = Number(toc.readBigUInt64BE(o));
      o += 8;
      if (!Number.isSafeInteger(size) || size > payloadSize)
        throw new UpdateError('UPDATE_ERR_ARCHIVE', `bad size for '${path}'`, { offset: at });
      dataLen += size;
      entries.push({ type: 'file', path, mode, size });
    } else if (type === 2) {
      entries.push({ type: 'dir', path, mode });
    } else if (type === 3) {
      need(2);
      const tlen = toc.readUInt16BE(o);
      o += 2;
      need(tlen);
      const target = toc.subarray(o, o + tlen).toString('utf8');
      o += tlen;
      checkSymlinkTarget(path, target, at);
      entries.push({ type: 'symlink', path, mode, target });
    } else {
      throw new UpdateError('UPDATE_ERR_ARCHIVE', `unknown entry type ${type}`, { offset: at });
    }
    seen.set(path, entries[entries.length - 1]!.type);
  }
  if (o !== toc.length)
    throw new UpdateError('UPDATE_ERR_ARCHIVE', 'bytes left over in the TOC', { offset: 16 + o });
  const totalLength = 16 + tocLen + dataLen;
  if (totalLength !== payloadSize) {
    throw new UpdateError(
      'UPDATE_ERR_ARCHIVE',
      `archive implies ${totalLength} bytes, payload is ${payloadSize}`,
      { offset: 16 },
    );
  }
  return { entries, dataOffset: 16 + tocLen, totalLength };
}

/** Encode an archive header + TOC (file contents follow, in order). */
export function encodeAppToc(entries: AppEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const p = Buffer.from(e.path, 'utf8');
    const head = Buffer.alloc(5);
    head.writeUInt8(e.type === 'file' ? 1 : e.type === 'dir' ? 2 : 3, 0);
    head.writeUInt16BE(e.mode, 1);
    head.writeUInt16BE(p.length, 3);
    parts.push(head, p);
    if (e.type === 'file') {
      const s = Buffer.alloc(8);
      s.writeBigUInt64BE(BigInt(e.size));
      parts.push(s);
    } else if (e.type === 'symlink') {
      const t = Buffer.from(e.target, 'utf8');
      const l = Buffer.alloc(2);
      l.writeUInt16BE(t.length);
      parts.push(l, t);
    }
  }
  const toc = Buffer.concat(parts);
  const h = Buffer.alloc(16);
  APP_MAGIC.copy(h, 0);
  h.writeUInt32BE(entries.length, 8);
  h.writeUInt32BE(toc.length, 12);
  return Buffer.concat([h, toc]);
}

/** One item of an in-memory archive: a file carries its bytes instead of a size. */
export type ArchiveItem =
  | { type: 'file'; path: string; mode: number; data: Buffer }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'symlink'; path: string; mode: number; target: string };

/** A whole archive in memory (tests, small trees). */
export function encodeAppArchive(items: ArchiveItem[]): Buffer {
  const entries: AppEntry[] = items.map((f) =>
    f.type === 'file' ? { type: 'file', path: f.path, mode: f.mode, size: f.data.length } : f,
  );
  return Buffer.concat([
    encodeAppToc(entries),
    ...items.map((f) => (f.type === 'file' ? f.data : Buffer.alloc(0))),
  ]);
}

/**
 * Incremental parser fed with verified payload bytes. In dry mode it only
 * checks the structure; otherwise it writes the tree below `targetDir`
 * (a fresh, empty directory).
 */
export class AppArchiveExtractor {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private toc: AppToc | null = null;
  private fileIndex = 0;
  private fileLeft = 0;
  private handle: FileHandle | null = null;
  private prepared = false;

  constructor(
    private readonly payloadSize: number,
    private readonly targetDir: string | null,
  ) {}

  get entries(): AppEntry[] | null {
    return this.toc?.entries ?? null;
  }

  async push(chunk: Buffer): Promise<void> {
    let data = chunk;
    if (!this.toc) {
      this.pending.push(chunk);
      this.pendingLen += chunk.length;
      const all = Buffer.concat(this.pending, this.pendingLen);
      const toc = decodeAppToc(all, this.payloadSize);
      if (!toc) {
        this.pending = [all];
        return;
      }
      this.toc = toc;
      this.pending = [];
      data = all.subarray(toc.dataOffset);
      await this.prepare();
    }
    await this.writeData(data);
  }

  private files(): Array<AppEntry & { type: 'file' }> {
    return (this.toc?.entries ?? []).filter((e): e is AppEntry & { type: 'file' } => e.type === 'file');
  }

  private async prepare(): Promise<void> {
    if (this.prepared || !this.toc) return;
    this.prepared = true;
    if (!this.targetDir) return;
    for (const e of this.toc.entries) {
      if (e.type === 'dir') await mkdir(join(this.targetDir, e.path), { recursive: true, mode: e.mode });
    }
    for (const e of this.toc.entries) {
      if (e.type === 'symlink') {
        await mkdir(join(this.targetDir, posix.dirname(e.path)), { recursive: true });
        await symlink(e.target, join(this.targetDir, e.path));
      }
    }
    await this.openNext();
  }

  private async openNext(): Promise<void> {
    const files = this.files();
    while (this.fileIndex < files.length) {
      const f = files[this.fileIndex] as AppEntry & { type: 'file' };
      if (this.targetDir) {
        const full = join(this.targetDir, f.path);
        await mkdir(join(this.targetDir, posix.dirname(f.path)), { recursive: true });
        this.handle = await open(full, 'wx', f.mode);
      }
      this.fileLeft = f.size;
      if (f.size > 0) return;
      await this.closeFile();
    }
  }

  private async closeFile(): Promise<void> {
    const files = this.files();
    const f = files[this.fileIndex];
    if (this.handle) {
      await this.handle.sync();
      await this.handle.close();
      this.handle = null;
      if (f && this.targetDir) await chmod(join(this.targetDir, f.path), f.mode);
    }
    this.fileIndex++;
  }

  private async writeData(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (this.fileLeft === 0) {
        await this.openNext();
        if (this.fileLeft === 0) throw new UpdateError('UPDATE_ERR_ARCHIVE', 'data after the last file');
      }
      const n = Math.min(this.fileLeft, data.length - off);
      if (this.handle) await this.handle.write(data, off, n);
      off += n;
      this.fileLeft -= n;
      if (this.fileLeft === 0) {
        await this.closeFile();
        await this.openNext();
      }
    }
  }

  /** Call after the last byte: throws when the archive was incomplete. */
  async finish(): Promise<AppEntry[]> {
    if (!this.toc) throw new UpdateError('UPDATE_ERR_TRUNCATED', 'app archive ended inside its TOC');
    await this.prepare();
    if (this.fileLeft > 0 || this.fileIndex < this.files().length) {
      if (this.handle) await this.handle.close();
      throw new UpdateError('UPDATE_ERR_TRUNCATED', 'app archive ended inside a file');
    }
    return this.toc.entries;
  }
}

/**
 * Read an extracted tree back as archive bytes (TOC + file contents in TOC
 * order) and return its SHA-256: equal to the payload hash when the slot holds
 * exactly what was verified.
 */
export async function hashExtractedTree(dir: string, entries: AppEntry[]): Promise<string> {
  const h = createHash('sha256');
  h.update(encodeAppToc(entries));
  for (const e of entries) {
    const full = join(dir, e.path);
    const st = await lstat(full).catch(() => null);
    if (!st) throw new UpdateError('UPDATE_ERR_READBACK', `'${e.path}' missing after write`);
    if (e.type === 'symlink') {
      if (!st.isSymbolicLink() || (await readlink(full)) !== e.target)
        throw new UpdateError('UPDATE_ERR_READBACK', `symlink '${e.path}' differs`);
    } else if (e.type === 'dir') {
      if (!st.isDirectory()) throw new UpdateError('UPDATE_ERR_READBACK', `'${e.path}' is not a directory`);
    } else {
      if (!st.isFile() || st.size !== e.size)
        throw new UpdateError('UPDATE_ERR_READBACK', `file '${e.path}' differs in size`);
    }
  }
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (const e of entries) {
    if (e.type !== 'file') continue;
    const fh = await open(join(dir, e.path), 'r');
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
  }
  return h.digest('hex');
}

export async function removeTree(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
