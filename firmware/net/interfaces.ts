/**
 * Which IPv4 address each configured LAN has right now. The lister is a seam
 * (os.networkInterfaces in production, a plain function in tests) so address
 * changes can be simulated.
 */
import os from 'node:os';
import type { LanConfig } from '../config/board-types.js';

export interface InterfaceAddress {
  address: string;
  netmask: string;
  mac: string;
  internal: boolean;
}

export type InterfaceLister = () => Record<string, InterfaceAddress[] | undefined>;

export const systemInterfaceLister: InterfaceLister = () => {
  const out: Record<string, InterfaceAddress[]> = {};
  for (const [name, infos] of Object.entries(os.networkInterfaces())) {
    out[name] = (infos ?? [])
      .filter((i) => i.family === 'IPv4')
      .map((i) => ({ address: i.address, netmask: i.netmask, mac: i.mac, internal: i.internal }));
  }
  return out;
};

export interface LanAddress {
  address: string;
  netmask: string;
  mac: string | null;
}

/**
 * The address a LAN uses: the pinned `address` when the board config names one
 * (the virtual board on 127.0.0.N), else the first non-link-local IPv4 address
 * of the interface, else a link-local one, else null (interface down or gone).
 */
export function resolveLanAddress(lan: LanConfig, lister: InterfaceLister): LanAddress | null {
  const infos = lister()[lan.interface] ?? [];
  const mac = infos[0]?.mac ?? null;
  if (lan.address) {
    const match = infos.find((i) => i.address === lan.address);
    return { address: lan.address, netmask: match?.netmask ?? '255.0.0.0', mac };
  }
  const usable = infos.filter((i) => !i.address.startsWith('169.254.'));
  const pick = usable[0] ?? infos[0];
  return pick ? { address: pick.address, netmask: pick.netmask, mac: pick.mac } : null;
}

/** True when `a` and `b` are in the same IPv4 subnet under `netmask`. */
export function sameSubnet(a: string, b: string, netmask: string): boolean {
  const n = (s: string): number => s.split('.').reduce((acc, p) => (acc << 8) + (Number(p) & 0xff), 0) >>> 0;
  const m = n(netmask);
  return (n(a) & m) >>> 0 === (n(b) & m) >>> 0;
}

/** Every IPv4 address of every interface (for `discover --all`). */
export function allIpv4Addresses(lister: InterfaceLister, includeInternal: boolean): string[] {
  const out: string[] = [];
  for (const infos of Object.values(lister())) {
    for (const i of infos ?? []) if (includeInternal || !i.internal) out.push(i.address);
  }
  return out;
}
