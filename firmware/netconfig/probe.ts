/**
 * Connectivity checks for the network revert, without ICMP (no raw sockets, no privilege): a TCP
 * connect to each target with a timeout. For a gateway any answer proves the path (an accepted
 * connection, or a refusal: the gateway's RST came back); for a service we expect to be up (the
 * Core) a target can ask for an accepted connection. A timeout, an unreachable network or a
 * missing route proves nothing. Gateways come from the settings (static) and from the kernel's
 * routing table (`/proc/net/route`, DHCP); `parseDefaultGateways` is the pure parser.
 */
import { createConnection, isIPv4 } from 'node:net';
import type { Logger } from '../log/logger.js';
import type { NetworkSettings } from './types.js';

export interface ProbeTarget {
  host: string;
  port: number;
  /** 'answer' (default): accepted or refused both count; 'accept': only an accepted connection. */
  expect?: 'answer' | 'accept';
}

/** Ports tried on a gateway: DNS, HTTP, HTTPS (routers answer on at least one, or refuse). */
export const GATEWAY_PORTS: readonly number[] = [53, 80, 443];

export function probeTcp(target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: target.host, port: target.port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' && (target.expect ?? 'answer') === 'answer'),
    );
  });
}

/** True when any target answers within `timeoutMs`; false for no targets. */
export function createReachabilityProbe(targets: ProbeTarget[], timeoutMs = 3000): () => Promise<boolean> {
  return async () => {
    if (targets.length === 0) return false;
    const results = await Promise.all(targets.map((t) => probeTcp(t, timeoutMs)));
    return results.some(Boolean);
  };
}

export interface ConnectivityProbeOptions {
  /** Asked at every check (settings and Cores change). */
  targets: () => ProbeTarget[] | Promise<ProbeTarget[]>;
  /** The answer when there is nothing to probe (e.g. "LAN A has an address"). */
  noTargets: () => boolean | Promise<boolean>;
  timeoutMs?: number;
  logger?: Logger;
}

export function createConnectivityProbe(o: ConnectivityProbeOptions): () => Promise<boolean> {
  return async () => {
    const targets = dedupe(await o.targets());
    if (targets.length === 0) {
      const ok = await o.noTargets();
      o.logger?.info('netconfig_probe', { targets: 0, ok });
      return ok;
    }
    const timeoutMs = o.timeoutMs ?? 3000;
    const results = await Promise.all(targets.map((t) => probeTcp(t, timeoutMs)));
    const ok = results.some(Boolean);
    o.logger?.info('netconfig_probe', {
      targets: targets.map((t, i) => `${t.host}:${t.port}=${results[i] ? 'up' : 'down'}`),
      ok,
    });
    return ok;
  };
}

function dedupe(targets: ProbeTarget[]): ProbeTarget[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    const k = `${t.host}|${t.port}|${t.expect ?? 'answer'}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Default routes (destination and mask 0, RTF_GATEWAY) from `/proc/net/route` text. */
export function parseDefaultGateways(text: string): Array<{ iface: string; gateway: string }> {
  const out: Array<{ iface: string; gateway: string }> = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface, dest, gw, flags, , , , mask] = f as [string, string, string, string, ...string[]];
    if (dest !== '00000000' || mask !== '00000000' || !/^[0-9A-Fa-f]{8}$/.test(gw)) continue;
    if ((parseInt(flags, 16) & 0x2) === 0) continue;
    const n = parseInt(gw, 16);
    // little-endian on every board we run on (arm64, armhf, x86-64)
    const gateway = [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
    if (gateway !== '0.0.0.0') out.push({ iface, gateway });
  }
  return out;
}

/** Gateway targets: static gateways in `network` plus default-route gateways on our interfaces. */
export function gatewayTargets(
  network: NetworkSettings,
  interfaces: { lanA: string; lanB: string | null },
  routes: Array<{ iface: string; gateway: string }>,
): ProbeTarget[] {
  const hosts: string[] = [];
  for (const lan of [network.lanA, network.lanB]) if (lan?.gateway) hosts.push(lan.gateway);
  for (const r of routes) {
    if (r.iface === interfaces.lanA || r.iface === interfaces.lanB) hosts.push(r.gateway);
  }
  const out: ProbeTarget[] = [];
  for (const host of [...new Set(hosts)].filter((h) => isIPv4(h))) {
    for (const port of GATEWAY_PORTS) out.push({ host, port });
  }
  return out;
}
