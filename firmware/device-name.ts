/**
 * The default device name, Q-SYS style: `<prefix>-<last 4 hex digits of the
 * LAN A MAC>`; random hex where there is no usable MAC (loopback on the
 * virtual board). The name is chosen once and then kept in the device state.
 */
import { randomBytes } from 'node:crypto';

export function defaultDeviceName(prefix: string, mac: string | null, random = randomBytes): string {
  const hex = (mac ?? '').replace(/[^0-9a-f]/gi, '').toLowerCase();
  const usable = hex.length === 12 && !/^0+$/.test(hex);
  const suffix = usable ? hex.slice(-4) : random(2).toString('hex');
  return `${prefix}-${suffix}`;
}
