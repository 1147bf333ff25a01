/**
 * The OS seam for network configuration: write/read files, run the steps that make the network
 * stack use them, and probe connectivity. `createFsNetBinding` is the real one (files under a
 * root directory, steps run as processes, or only logged in a dry run); `FakeNetBinding` keeps
 * everything in memory for unit tests.
 */
import { execFile } from 'node:child_process';
import { mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { Logger } from '../log/logger.js';
import type { ApplyStep } from './apply-plan.js';
import type { RenderedFile } from './render.js';

export interface NetBinding {
  /** Current bytes of each path (null = no such file). */
  read(paths: string[]): Promise<Map<string, Buffer | null>>;
  /** Write every file atomically (parents created). */
  write(files: RenderedFile[]): Promise<void>;
  /** Remove a file if present. */
  remove(path: string): Promise<void>;
  /**
   * Make the OS use the files now: run `steps` in order. A failing step that is not optional
   * rejects (the remaining steps are not run); optional failures are only logged.
   */
  apply(steps: ApplyStep[]): Promise<void>;
  /** True when the device can still reach its peers (gateway, Core) after a change. */
  connectivity(): Promise<boolean>;
}

/** Runs one command; rejects on a non-zero exit, a signal or a timeout. */
export type CommandRunner = (argv: string[]) => Promise<void>;

export const execCommandRunner: CommandRunner = (argv) =>
  new Promise((resolve, reject) =>
    execFile(argv[0]!, argv.slice(1), { timeout: 60_000 }, (err, _out, stderr) =>
      err
        ? reject(new Error(`${argv.join(' ')}: ${String(stderr).trim() || err.message}`, { cause: err }))
        : resolve(),
    ),
  );

export interface FsNetBindingOptions {
  /** Runs apply steps; default: none are run (files only, a dry run). */
  run?: CommandRunner;
  /** Connectivity probe; default: always true (no probe configured). */
  probe?: () => Promise<boolean>;
  logger?: Logger;
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
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
    async apply(steps) {
      const run = options.run;
      if (!run) {
        options.logger?.debug('netconfig_dry_run', { steps: steps.map((s) => s.argv.join(' ')) });
        return;
      }
      for (const step of steps) {
        try {
          await run(step.argv);
        } catch (err) {
          if (!step.optional) throw err;
          options.logger?.warn('netconfig_step_failed', { step: step.argv.join(' '), err });
        }
      }
    },
    connectivity: options.probe ?? (() => Promise.resolve(true)),
  };
}

export class FakeNetBinding implements NetBinding {
  readonly files = new Map<string, { content: string; mode: number }>();
  /** Every apply() call's steps, in order. */
  readonly plans: ApplyStep[][] = [];
  applied = 0;
  online = true;
  /** Set to make the next apply() reject (once). */
  failNextApply: Error | null = null;

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

  apply(steps: ApplyStep[]): Promise<void> {
    this.applied++;
    this.plans.push(steps);
    const fail = this.failNextApply;
    this.failNextApply = null;
    return fail ? Promise.reject(fail) : Promise.resolve();
  }

  connectivity(): Promise<boolean> {
    return Promise.resolve(this.online);
  }
}

export { createReachabilityProbe } from './probe.js';
