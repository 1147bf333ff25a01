/**
 * The OS seam for network configuration: write/read files, ask the network stack to apply them,
 * and probe connectivity. `createFsNetBinding` is the real one (files under a root directory, an
 * optional apply command); `FakeNetBinding` keeps everything in memory for unit tests.
 */
import { execFile } from 'node:child_process';
import { createConnection } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { RenderedFile } from './render.js';

export interface NetBinding {
  /** Current bytes of each path (null = no such file). */
  read(paths: string[]): Promise<Map<string, Buffer | null>>;
  /** Write every file atomically (parents created). */
  write(files: RenderedFile[]): Promise<void>;
  /** Remove a file if present. */
  remove(path: string): Promise<void>;
  /** Make the OS use the files now (restart networking / reload NM). */
  apply(): Promise<void>;
  /** True when the device can still reach its peers (gateway, Core) after a change. */
  connectivity(): Promise<boolean>;
}

export interface FsNetBindingOptions {
  /** Command run by apply(), e.g. ['systemctl', 'restart', 'networking']; none = files only. */
  applyCommand?: string[];
  /** Connectivity probe; default: always true (no probe configured). */
  probe?: () => Promise<boolean>;
}

export function createFsNetBinding(options: FsNetBindingOptions = {}): NetBinding {
  return {
    async read(paths) {
      const out = new Map<string, Buffer | null>();
      for (const p of paths) out.set(p, await readFileIfExists(p));
      return out;
    },
    async write(files) {
      for (const f of files) {
        await mkdir(dirname(f.path), { recursive: true, mode: 0o755 });
        await writeFileAtomic(f.path, f.content, { mode: f.mode });
      }
    },
    async remove(path) {
      const { unlink } = await import('node:fs/promises');
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
    apply() {
      const cmd = options.applyCommand;
      if (!cmd || cmd.length === 0) return Promise.resolve();
      return new Promise((resolve, reject) =>
        execFile(cmd[0]!, cmd.slice(1), { timeout: 60_000 }, (err) => (err ? reject(err) : resolve())),
      );
    },
    connectivity: options.probe ?? (() => Promise.resolve(true)),
  };
}

export class FakeNetBinding implements NetBinding {
  readonly files = new Map<string, { content: string; mode: number }>();
  applied = 0;
  online = true;

  read(paths: string[]): Promise<Map<string, Buffer | null>> {
    const out = new Map<string, Buffer | null>();
    for (const p of paths) {
      const f = this.files.get(p);
      out.set(p, f ? Buffer.from(f.content) : null);
    }
    return Promise.resolve(out);
  }

  write(files: RenderedFile[]): Promise<void> {
    for (const f of files) this.files.set(f.path, { content: f.content, mode: f.mode });
    return Promise.resolve();
  }

  remove(path: string): Promise<void> {
    this.files.delete(path);
    return Promise.resolve();
  }

  apply(): Promise<void> {
    this.applied++;
    return Promise.resolve();
  }

  connectivity(): Promise<boolean> {
    return Promise.resolve(this.online);
  }
}

/**
 * A connectivity probe for `createFsNetBinding`: true when any target answers a TCP connect
 * within `timeoutMs` (an accepted connection or a refusal both prove the path works; a timeout
 * or an unreachable network does not). Typical targets: the gateway's SSH/HTTP port, the Core
 * that claimed the device.
 */
export function createReachabilityProbe(
  targets: Array<{ host: string; port: number }>,
  timeoutMs = 3000,
): () => Promise<boolean> {
  const one = (host: string, port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = createConnection({ host, port });
      const done = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(timeoutMs, () => done(false));
      socket.once('connect', () => done(true));
      socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
    });
  return async () => {
    if (targets.length === 0) return false;
    const results = await Promise.all(targets.map((t) => one(t.host, t.port)));
    return results.some(Boolean);
  };
}
