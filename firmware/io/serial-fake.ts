/**
 * An in-memory SerialBinding (per instance). `device(path)` is the far end of a port: what the
 * runtime wrote, a way to send bytes back, and a way to make the port fail.
 */
import type { SerialSettings } from '../control/apis.js';
import { SerialError, type SerialBinding, type SerialPortHandle } from './serial-binding.js';

export class FakeSerialDevice {
  readonly written: Buffer[] = [];
  settings: SerialSettings | null = null;
  isOpen = false;
  /** Reopens seen (settings other than baud changed). */
  reopens = 0;
  emitData: (d: Buffer) => void = () => {};
  emitError: (e: Error) => void = () => {};
  emitClose: (reason: string) => void = () => {};

  get writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }
  /** Bytes from the device to the runtime. */
  send(data: Buffer | string): void {
    this.emitData(Buffer.isBuffer(data) ? data : Buffer.from(data));
  }
  /** A line error (reported, the port stays open). */
  lineError(message: string): void {
    this.emitError(Object.assign(new Error(message), { code: 'SERIAL_ERR_IO' }));
  }
  /** The device goes away. */
  unplug(): void {
    this.emitClose('device disconnected');
  }
}

export class FakeSerialBinding implements SerialBinding {
  readonly kind = 'fake';
  private readonly devices = new Map<string, FakeSerialDevice>();

  constructor(paths: string[] = []) {
    for (const p of paths) this.devices.set(p, new FakeSerialDevice());
  }

  device(path: string): FakeSerialDevice {
    let d = this.devices.get(path);
    if (!d) {
      d = new FakeSerialDevice();
      this.devices.set(path, d);
    }
    return d;
  }

  open(path: string, settings: SerialSettings): Promise<SerialPortHandle> {
    const dev = this.devices.get(path);
    if (!dev) return Promise.reject(new SerialError('SERIAL_ERR_IO', `cannot open ${path}: no such device`));
    if (dev.isOpen) return Promise.reject(new SerialError('SERIAL_ERR_IO', `cannot open ${path}: busy`));
    dev.isOpen = true;
    dev.settings = { ...settings };
    const dataL: Array<(d: Buffer) => void> = [];
    const errL: Array<(e: Error) => void> = [];
    const closeL: Array<(r: string) => void> = [];
    let closed = false;
    const fireClose = (reason: string): void => {
      if (closed) return;
      closed = true;
      dev.isOpen = false;
      for (const l of closeL) l(reason);
    };
    dev.emitData = (d) => {
      if (!closed) for (const l of dataL) l(d);
    };
    dev.emitError = (e) => {
      if (!closed) for (const l of errL) l(e);
    };
    dev.emitClose = fireClose;
    return Promise.resolve({
      path,
      write: async (data) => {
        if (closed) throw new SerialError('SERIAL_ERR_NOT_OPEN', `${path} is closed`);
        dev.written.push(Buffer.from(data));
      },
      update: async (s) => {
        if (closed) throw new SerialError('SERIAL_ERR_NOT_OPEN', `${path} is closed`);
        const old = dev.settings!;
        if (old.dataBits !== s.dataBits || old.parity !== s.parity || old.stopBits !== s.stopBits)
          dev.reopens++;
        dev.settings = { ...s };
      },
      onData: (l) => dataL.push(l),
      onError: (l) => errL.push(l),
      onClose: (l) => closeL.push(l),
      close: async () => fireClose('closed'),
    });
  }
}
