/** GPIO and serial I/O: public surface for main.ts. */
export type { GpioBinding, GpioLine, GpioLineRef } from './gpio-binding.js';
export { GpioError } from './gpio-binding.js';
export { FakeGpioBinding } from './gpio-fake.js';
export { SysfsGpioBinding, listSysfsChips, sysfsNumber } from './gpio-sysfs.js';
export { LibgpiodBinding } from './gpio-libgpiod.js';
export { GpioService, Debouncer, IDENTIFY_CONTROL } from './gpio-service.js';
export type { SerialBinding, SerialPortHandle } from './serial-binding.js';
export { SerialError } from './serial-binding.js';
export { FakeSerialBinding } from './serial-fake.js';
export { createLinuxSerialBinding } from './serial-linux.js';
export { SerialBridge } from './serial-bridge.js';
export { createGpioBinding, createSerialBinding } from './select.js';
