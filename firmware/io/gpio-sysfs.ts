/**
 * A GpioBinding over the (deprecated) sysfs GPIO interface, written without onoff so that the
 * root is injectable: tests point it at a fake tree in a temp dir.
 *
 * Line numbers in sysfs are global: base of the chip + offset. The base is read from
 * `<root>/gpiochip<N>/base`, the chip is found by its `label` (or by the directory name
 * 'gpiochip<N>'), because kernels differ: Raspberry Pi kernels >= 6.6 put the SoC's chip at
 * base 512, the Pi 5's RP1 chip sits at 571, older kernels at 0.
 *
 * sysfs edge events need poll(2) on the value file, which Node cannot do; inputs are therefore
 * sampled every `pollMs` (default 10 ms), well inside the debounce time above.
 */
import { access, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import {
  GpioError,
  lineKey,
  type GpioBinding,
  type GpioDirection,
  type GpioLine,
  type GpioLineRef,
} from './gpio-binding.js';

export interface SysfsChip {
  /** Directory name, 'gpiochip512'. */
  dir: string;
  label: string;
  base: number;
  ngpio: number;
}

/** Pure: the global sysfs number of (chip, line). */
export function sysfsNumber(chips: readonly SysfsChip[], ref: GpioLineRef): number {
  const chip = chips.find((c) => c.label === ref.chip) ?? chips.find((c) => c.dir === ref.chip);
  if (!chip) {
    throw new GpioError(
      'GPIO_ERR_NO_CHIP',
      `no GPIO chip labelled ${ref.chip} (have: ${chips.map((c) => `${c.dir}=${c.label}`).join(', ') || 'none'})`,
    );
  }
  if (ref.line < 0 || ref.line >= chip.ngpio) {
    throw new GpioError(
      'GPIO_ERR_NO_LINE',
      `${ref.chip} has ${chip.ngpio} lines; ${ref.line} is out of range`,
    );
  }
  return chip.base + ref.line;
}

export async function listSysfsChips(root: string): Promise<SysfsChip[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    throw new GpioError('GPIO_ERR_NO_CHIP', `sysfs GPIO is not available at ${root}`, { cause: err });
  }
  const chips: SysfsChip[] = [];
  for (const dir of names.filter((n) => /^gpiochip\d+$/.test(n)).sort()) {
    try {
      const [label, base, ngpio] = await Promise.all(
        ['label', 'base', 'ngpio'].map((f) => readFile(join(root, dir, f), 'utf8').then((s) => s.trim())),
      );
      chips.push({ dir, label: label!, base: Number(base), ngpio: Number(ngpio) });
    } catch {
      // A chip directory we cannot read is skipped.
    }
  }
  return chips;
}

export interface SysfsGpioOptions {
  clock: ClockSource;
  /** Default '/sys/class/gpio'. */
  root?: string;
  pollMs?: number;
  /** How long to wait for gpioN/ to appear after export (udev may be slow). */
  exportWaitMs?: number;
}

export class SysfsGpioBinding implements GpioBinding {
  readonly kind = 'sysfs';
  readonly root: string;
  private readonly clock: ClockSource;
  private readonly pollMs: number;
  private readonly exportWaitMs: number;
  private readonly inUse = new Set<string>();

  constructor(options: SysfsGpioOptions) {
    this.clock = options.clock;
    this.root = options.root ?? '/sys/class/gpio';
    this.pollMs = options.pollMs ?? 10;
    this.exportWaitMs = options.exportWaitMs ?? 1000;
  }

  async open(ref: GpioLineRef, direction: GpioDirection, initial = false): Promise<GpioLine> {
    const key = lineKey(ref);
    if (this.inUse.has(key)) throw new GpioError('GPIO_ERR_BUSY', `GPIO ${key} is in use`);
    const n = sysfsNumber(await listSysfsChips(this.root), ref);
    this.inUse.add(key);
    const dir = join(this.root, `gpio${n}`);
    try {
      if (!(await exists(dir))) {
        await writeFile(join(this.root, 'export'), String(n));
        await this.waitFor(dir);
      }
      // 'high'/'low' set direction and level in one step, without a glitch.
      await writeFile(join(dir, 'direction'), direction === 'input' ? 'in' : initial ? 'high' : 'low');
    } catch (err) {
      this.inUse.delete(key);
      if (err instanceof GpioError) throw err;
      throw new GpioError('GPIO_ERR_IO', `cannot set up GPIO ${n} (${key}): ${(err as Error).message}`, {
        cause: err,
      });
    }
    const valueFile = join(dir, 'value');
    let closed = false;
    const listeners = new Set<(l: boolean) => void>();
    let timer: TimerHandle | null = null;
    let last: boolean | null = null;
    const read = async (): Promise<boolean> => {
      if (closed) throw new GpioError('GPIO_ERR_CLOSED', `GPIO ${key} is closed`);
      try {
        return (await readFile(valueFile, 'utf8')).trim() === '1';
      } catch (err) {
        throw new GpioError('GPIO_ERR_IO', `cannot read ${valueFile}`, { cause: err });
      }
    };
    const poll = (): void => {
      timer = null;
      if (closed || listeners.size === 0) return;
      read().then(
        (level) => {
          if (closed) return;
          if (last !== null && level !== last) for (const l of listeners) l(level);
          last = level;
          timer = this.clock.setTimeout(poll, this.pollMs);
        },
        () => {
          if (!closed) timer = this.clock.setTimeout(poll, this.pollMs * 10);
        },
      );
    };
    return {
      ref,
      direction,
      read,
      write: async (level) => {
        if (closed) throw new GpioError('GPIO_ERR_CLOSED', `GPIO ${key} is closed`);
        if (direction !== 'output') throw new GpioError('GPIO_ERR_DIRECTION', `GPIO ${key} is an input`);
        try {
          await writeFile(valueFile, level ? '1' : '0');
        } catch (err) {
          throw new GpioError('GPIO_ERR_IO', `cannot write ${valueFile}`, { cause: err });
        }
      },
      watch: (listener) => {
        listeners.add(listener);
        if (timer === null) poll();
        return () => listeners.delete(listener);
      },
      close: async () => {
        if (closed) return;
        closed = true;
        listeners.clear();
        if (timer) this.clock.clearTimeout(timer);
        this.inUse.delete(key);
        await writeFile(join(this.root, 'unexport'), String(n)).catch(() => undefined);
      },
    };
  }

  private async waitFor(path: string): Promise<void> {
    const start = this.clock.monotonicMs();
    while (!(await exists(path))) {
      if (this.clock.monotonicMs() - start > this.exportWaitMs) {
        throw new GpioError('GPIO_ERR_IO', `${path} did not appear after export`);
      }
      await new Promise<void>((r) => this.clock.setTimeout(r, 10));
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
