/**
 * The serial seam. `SerialBinding.open` returns a port handle that moves bytes and reports
 * errors; the production binding is @serialport/stream over @serialport/bindings-cpp, the fake
 * is in serial-fake.ts (per instance).
 *
 * Behaviour every binding keeps:
 *   - `onClose(reason)` fires once, when the port closed for any cause ('closed' when we
 *     asked, otherwise the error text: a USB adapter pulled out, the PTY's other end gone).
 *   - `update` applies new settings; when something other than the baud rate changes the port
 *     may be closed and reopened underneath (no onClose for that).
 *   - After close, `write`/`update` fail with SERIAL_ERR_NOT_OPEN.
 */
import { QperiphError } from '../errors.js';
import type { SerialSettings } from '../control/apis.js';

export type SerialErrorCode =
  'SERIAL_ERR_UNKNOWN_PORT' | 'SERIAL_ERR_BAD_SETTINGS' | 'SERIAL_ERR_NOT_OPEN' | 'SERIAL_ERR_IO';

export class SerialError extends QperiphError {
  declare readonly code: SerialErrorCode;
  constructor(code: SerialErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface SerialPortHandle {
  readonly path: string;
  write(data: Buffer): Promise<void>;
  update(settings: SerialSettings): Promise<void>;
  onData(listener: (data: Buffer) => void): void;
  onError(listener: (err: Error) => void): void;
  onClose(listener: (reason: string) => void): void;
  close(): Promise<void>;
}

export interface SerialBinding {
  readonly kind: string;
  open(path: string, settings: SerialSettings): Promise<SerialPortHandle>;
}

export const STANDARD_BAUD_RATES = [
  50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400,
  460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000,
] as const;

/** Check settings; throws SERIAL_ERR_BAD_SETTINGS. */
export function checkSettings(s: SerialSettings): SerialSettings {
  if (!(STANDARD_BAUD_RATES as readonly number[]).includes(s.baudRate)) {
    throw new SerialError('SERIAL_ERR_BAD_SETTINGS', `baud rate ${s.baudRate} is not a standard rate`);
  }
  if (![5, 6, 7, 8].includes(s.dataBits))
    throw new SerialError('SERIAL_ERR_BAD_SETTINGS', 'dataBits must be 5..8');
  if (!['none', 'even', 'odd', 'mark', 'space'].includes(s.parity)) {
    throw new SerialError('SERIAL_ERR_BAD_SETTINGS', `parity ${s.parity} is unknown`);
  }
  if (![1, 1.5, 2].includes(s.stopBits))
    throw new SerialError('SERIAL_ERR_BAD_SETTINGS', 'stopBits must be 1, 1.5 or 2');
  if (s.stopBits === 1.5 && s.dataBits !== 5) {
    throw new SerialError('SERIAL_ERR_BAD_SETTINGS', 'Linux supports 1.5 stop bits only with 5 data bits');
  }
  return s;
}
