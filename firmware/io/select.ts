/**
 * Real defaults for main.ts: the GPIO binding named by the board config, and the serial binding
 * (the fake one for 'virtual:' paths, which have no device behind them).
 */
import type { ClockSource } from '../clock/clock.js';
import type { BoardConfig } from '../config/board-types.js';
import type { Logger } from '../log/logger.js';
import type { GpioBinding } from './gpio-binding.js';
import { FakeGpioBinding } from './gpio-fake.js';
import { LibgpiodBinding } from './gpio-libgpiod.js';
import { SysfsGpioBinding } from './gpio-sysfs.js';
import type { SerialBinding } from './serial-binding.js';
import { FakeSerialBinding } from './serial-fake.js';
import { createLinuxSerialBinding } from './serial-linux.js';

export function createGpioBinding(
  board: Readonly<BoardConfig>,
  deps: { clock: ClockSource; logger: Logger; sysfsRoot?: string },
): GpioBinding {
  switch (board.gpio.binding) {
    case 'sysfs':
      return new SysfsGpioBinding({ clock: deps.clock, root: deps.sysfsRoot });
    case 'libgpiod':
      return new LibgpiodBinding({ logger: deps.logger });
    case 'fake':
      return new FakeGpioBinding();
  }
}

export function createSerialBinding(board: Readonly<BoardConfig>): SerialBinding {
  const virtual = board.serial.filter((p) => p.path.startsWith('virtual:')).map((p) => p.path);
  if (virtual.length === board.serial.length) return new FakeSerialBinding(virtual);
  const real = createLinuxSerialBinding();
  if (virtual.length === 0) return real;
  const fake = new FakeSerialBinding(virtual);
  return {
    kind: 'mixed',
    open: (path, settings) =>
      path.startsWith('virtual:') ? fake.open(path, settings) : real.open(path, settings),
  };
}
