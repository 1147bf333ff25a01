/**
 * The production SerialBinding: @serialport/stream over @serialport/bindings-cpp (termios on
 * Linux; prebuilt for x64/arm/arm64). Only the baud rate can change on an open port; other
 * settings reopen it.
 */
import { autoDetect } from '@serialport/bindings-cpp';
import { SerialPortStream } from '@serialport/stream';
import type { SerialSettings } from '../control/apis.js';
import { SerialError, type SerialBinding, type SerialPortHandle } from './serial-binding.js';

type Stream = SerialPortStream;

function openStream(path: string, s: SerialSettings): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const port = new SerialPortStream({
      binding: autoDetect(),
      path,
      baudRate: s.baudRate,
      dataBits: s.dataBits,
      parity: s.parity,
      stopBits: s.stopBits,
      autoOpen: false,
      // Another process holding the port is an error, not a silent share.
      lock: true,
    });
    port.open((err) => {
      if (err)
        reject(new SerialError('SERIAL_ERR_IO', `cannot open ${path}: ${err.message}`, { cause: err }));
      else resolve(port);
    });
  });
}

export function createLinuxSerialBinding(): SerialBinding {
  return {
    kind: 'bindings-cpp',
    async open(path, settings) {
      let current = settings;
      let port = await openStream(path, settings);
      let closed = false;
      let reopening = false;
      const dataL: Array<(d: Buffer) => void> = [];
      const errL: Array<(e: Error) => void> = [];
      const closeL: Array<(r: string) => void> = [];
      let lastError: Error | null = null;
      const fireClose = (reason: string): void => {
        if (closed) return;
        closed = true;
        for (const l of closeL) l(reason);
      };
      const attach = (p: Stream): void => {
        p.on('data', (d: Buffer) => {
          for (const l of dataL) l(d);
        });
        p.on('error', (e: Error) => {
          lastError = e;
          for (const l of errL) l(e);
        });
        p.on('close', (e?: Error & { disconnected?: boolean }) => {
          if (p !== port || reopening) return;
          fireClose(e?.message ?? lastError?.message ?? 'closed');
        });
      };
      attach(port);
      const handle: SerialPortHandle = {
        path,
        write: (data) =>
          new Promise((resolve, reject) => {
            if (closed) return reject(new SerialError('SERIAL_ERR_NOT_OPEN', `${path} is closed`));
            port.write(data, (err) => {
              if (err)
                reject(new SerialError('SERIAL_ERR_IO', `write to ${path}: ${err.message}`, { cause: err }));
              else resolve();
            });
          }),
        async update(next) {
          if (closed) throw new SerialError('SERIAL_ERR_NOT_OPEN', `${path} is closed`);
          const onlyBaud =
            next.dataBits === current.dataBits &&
            next.parity === current.parity &&
            next.stopBits === current.stopBits;
          if (onlyBaud) {
            await new Promise<void>((resolve, reject) =>
              port.update({ baudRate: next.baudRate }, (err) =>
                err
                  ? reject(
                      new SerialError('SERIAL_ERR_IO', `set baud on ${path}: ${err.message}`, { cause: err }),
                    )
                  : resolve(),
              ),
            );
          } else {
            reopening = true;
            try {
              await new Promise<void>((resolve) => port.close(() => resolve()));
              port = await openStream(path, next);
              attach(port);
            } finally {
              reopening = false;
            }
          }
          current = next;
        },
        onData: (l) => dataL.push(l),
        onError: (l) => errL.push(l),
        onClose: (l) => closeL.push(l),
        async close() {
          if (closed) return;
          closed = true;
          await new Promise<void>((resolve) => port.close(() => resolve()));
          for (const l of closeL) l('closed');
        },
      };
      return handle;
    },
  };
}
