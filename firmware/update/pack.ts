/** Pack a directory tree into a QAPPARC1 app archive file (signing side). */
import { lstat, open, readdir, readlink, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeAppToc, type AppEntry } from './app-archive.js';
import { UpdateError } from './errors.js';

export async function listTree(dir: string): Promise<AppEntry[]> {
  const out: AppEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(join(dir, r));
      const mode = st.mode & 0o777;
      if (st.isSymbolicLink())
        out.push({ type: 'symlink', path: r, mode, target: await readlink(join(dir, r)) });
      else if (st.isDirectory()) {
        out.push({ type: 'dir', path: r, mode });
        await walk(r);
      } else if (st.isFile()) out.push({ type: 'file', path: r, mode, size: st.size });
      else throw new UpdateError('UPDATE_ERR_ARCHIVE', `cannot pack special file ${r}`);
    }
  };
  await walk('');
  return out;
}

export async function packAppDir(dir: string, outFile: string): Promise<number> {
  const entries = await listTree(dir);
  const fh = await open(outFile, 'w');
  try {
    let pos = 0;
    const toc = encodeAppToc(entries);
    await fh.write(toc, 0, toc.length, pos);
    pos += toc.length;
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const data = await readFile(join(dir, e.path));
      if (data.length !== e.size)
        throw new UpdateError('UPDATE_ERR_ARCHIVE', `${e.path} changed while packing`);
      await fh.write(data, 0, data.length, pos);
      pos += data.length;
    }
    await fh.sync();
    return pos;
  } finally {
    await fh.close();
  }
}
