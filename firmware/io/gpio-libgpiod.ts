/**
 * A GpioBinding over the libgpiod v1 command-line tools (Debian 12 `gpiod` 1.6), for kernels
 * without sysfs GPIO:
 *   - input read:  `gpioget <chip> <line>` prints 0 or 1;
 *   - input watch: `gpiomon --format=%e <chip> <line>` stays running and prints 1 (rising) or
 *     0 (falling) per edge;
 *   - output:      `gpioset --mode=signal <chip> <line>=<0|1>` holds the line while it runs; a
 *     new level replaces the process (SIGTERM the old one after the new one started).
 * The chip is given as the tools take it: a label or 'gpiochipN'. The commands run through an
 * injectable `spawn` so tests use stub scripts or a fake runner.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Logger } from '../log/logger.js';
import {
  GpioError,
  lineKey,
  type GpioBinding,
  type GpioDirection,
  type GpioLine,
  type GpioLineRef,
} from './gpio-binding.js';

export type Spawner = (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;

export interface LibgpiodOptions {
  logger: Logger;
  spawn?: Spawner;
  /** Directory of the tools (default: found on PATH). */
  toolDir?: string;
}

function run(spawn: Spawner, cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new GpioError('GPIO_ERR_IO', `${cmd}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else
        reject(
          new GpioError(
            /unable to find|not find|no such/i.test(err) ? 'GPIO_ERR_NO_CHIP' : 'GPIO_ERR_IO',
            `${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`,
          ),
        );
    });
  });
}

export class LibgpiodBinding implements GpioBinding {
  readonly kind = 'libgpiod';
  private readonly spawn: Spawner;
  private readonly log: Logger;
  private readonly tool: (name: string) => string;
  private readonly inUse = new Set<string>();

  constructor(options: LibgpiodOptions) {
    this.spawn = options.spawn ?? nodeSpawn;
    this.log = options.logger.child({ module: 'gpio-libgpiod' });
    this.tool = (name) => (options.toolDir ? `${options.toolDir}/${name}` : name);
  }

  async open(ref: GpioLineRef, direction: GpioDirection, initial = false): Promise<GpioLine> {
    const key = lineKey(ref);
    if (this.inUse.has(key)) throw new GpioError('GPIO_ERR_BUSY', `GPIO ${key} is in use`);
    this.inUse.add(key);
    let closed = false;
    let holder: ChildProcess | null = null;
    let monitor: ChildProcess | null = null;
    let level = initial;
    const listeners = new Set<(l: boolean) => void>();
    const args = [ref.chip, String(ref.line)];
    const hold = async (value: boolean): Promise<void> => {
      const child = this.spawn(
        this.tool('gpioset'),
        ['--mode=signal', ref.chip, `${ref.line}=${value ? 1 : 0}`],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        child.once('spawn', () => {
          settled = true;
          resolve();
        });
        child.once('error', (e) => {
          if (!settled) reject(new GpioError('GPIO_ERR_IO', `gpioset: ${e.message}`, { cause: e }));
        });
      });
      child.on('exit', (code, signal) => {
        if (child === holder && !closed && signal === null)
          this.log.warn('gpioset_exited', { line: key, code });
      });
      const old = holder;
      holder = child;
      level = value;
      old?.kill('SIGTERM');
    };
    try {
      if (direction === 'output') await hold(initial);
      else await run(this.spawn, this.tool('gpioget'), args);
    } catch (err) {
      this.inUse.delete(key);
      throw err;
    }
    const check = (): void => {
      if (closed) throw new GpioError('GPIO_ERR_CLOSED', `GPIO ${key} is closed`);
    };
    return {
      ref,
      direction,
      read: async () => {
        check();
        if (direction === 'output') return level;
        return (await run(this.spawn, this.tool('gpioget'), args)).trim() === '1';
      },
      write: async (value) => {
        check();
        if (direction !== 'output') throw new GpioError('GPIO_ERR_DIRECTION', `GPIO ${key} is an input`);
        await hold(value);
      },
      watch: (listener) => {
        listeners.add(listener);
        if (!monitor && direction === 'input') {
          const child = this.spawn(this.tool('gpiomon'), ['--format=%e', ...args], {
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          monitor = child;
          let partial = '';
          child.stdout?.on('data', (d: Buffer) => {
            partial += d.toString();
            const lines = partial.split('\n');
            partial = lines.pop() ?? '';
            for (const l of lines) {
              const t = l.trim();
              if (t !== '0' && t !== '1') continue;
              for (const cb of listeners) cb(t === '1');
            }
          });
          child.on('error', (e) => this.log.warn('gpiomon_failed', { line: key, err: e }));
          child.on('exit', (code, signal) => {
            if (!closed && signal === null) this.log.warn('gpiomon_exited', { line: key, code });
            if (monitor === child) monitor = null;
          });
        }
        return () => listeners.delete(listener);
      },
      close: async () => {
        if (closed) return;
        closed = true;
        listeners.clear();
        holder?.kill('SIGTERM');
        monitor?.kill('SIGTERM');
        this.inUse.delete(key);
      },
    };
  }
}
