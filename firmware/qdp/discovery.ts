/**
 * The discovery client behind `qperiph discover`: listens on the QDP ports,
 * queries for peripherals and Cores, and collects every device heard (our own
 * peripherals and real Q-SYS gear alike), whether by announcement or answer.
 */
import type { ClockSource } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../net/datagram-binding.js';
import { decodeQdp, encodeQdp, QdpDecodeError } from './qdp-codec.js';
import { QDP_LISTEN_PORTS, QDP_MULTICAST_GROUP, type QdpControl, type QdpDevice } from './qdp-types.js';

export interface DiscoveredDevice {
  device: QdpDevice;
  control: QdpControl | null;
  from: RemoteInfo;
  via: 'announcement' | 'answer';
  /** Milliseconds after discovery started when this device was first heard. */
  firstHeardAfterMs: number;
  lastHeardAfterMs: number;
  packets: number;
}

export interface DiscoverOptions {
  binding: DatagramBinding;
  clock: ClockSource;
  logger: Logger;
  /** Local IPv4 addresses whose interfaces to search (127.0.0.1 = loopback). */
  addresses: string[];
  timeoutMs: number;
  ttl?: number;
  queries?: string[];
  queryPorts?: readonly number[];
  listenPorts?: readonly number[];
  requeryMs?: number;
  onDevice?: (d: DiscoveredDevice) => void;
}

export interface DiscoverResult {
  devices: DiscoveredDevice[];
  dropped: Record<string, number>;
  warnings: string[];
}

export const DEFAULT_DISCOVERY_QUERIES: readonly string[] = Object.freeze([
  'device.ioframe*',
  'device.core*',
]);

export async function discover(options: DiscoverOptions): Promise<DiscoverResult> {
  const { binding, clock } = options;
  const log = options.logger.child({ module: 'discover' });
  const startedAt = clock.monotonicMs();
  const devices = new Map<string, DiscoveredDevice>();
  const dropped: Record<string, number> = {};
  const warnings: string[] = [];
  const sockets: DatagramSocket[] = [];

  const handle = (via: DiscoveredDevice['via']) => (data: Buffer, from: RemoteInfo) => {
    let packet;
    try {
      packet = decodeQdp(data);
    } catch (err) {
      const code = err instanceof QdpDecodeError ? err.code : 'QDP_ERR_INTERNAL';
      dropped[code] = (dropped[code] ?? 0) + 1;
      return;
    }
    if (!packet.device) return; // a query (maybe ours)
    const key = `${packet.device.type}/${packet.device.name}`;
    const t = clock.monotonicMs() - startedAt;
    const known = devices.get(key);
    if (known) {
      known.device = packet.device;
      known.control = packet.control ?? null;
      known.lastHeardAfterMs = t;
      known.packets++;
      return;
    }
    const d: DiscoveredDevice = {
      device: packet.device,
      control: packet.control ?? null,
      from,
      via,
      firstHeardAfterMs: t,
      lastHeardAfterMs: t,
      packets: 1,
    };
    devices.set(key, d);
    options.onDevice?.(d);
  };

  for (const port of options.listenPorts ?? QDP_LISTEN_PORTS) {
    const s = binding.createUdp4({ reuseAddr: true });
    s.onMessage(handle('announcement'));
    s.onError((err) => log.warn('socket_error', { port, err }));
    try {
      await s.bind(port);
    } catch (err) {
      warnings.push(`cannot listen on ${port}: ${(err as Error).message}`);
      await s.close();
      continue;
    }
    for (const a of options.addresses) {
      try {
        s.addMembership(QDP_MULTICAST_GROUP, a);
      } catch (err) {
        warnings.push(`cannot join ${QDP_MULTICAST_GROUP} on ${a}: ${(err as Error).message}`);
      }
    }
    sockets.push(s);
  }

  const queriers: DatagramSocket[] = [];
  for (const a of options.addresses) {
    const q = binding.createUdp4({ reuseAddr: false });
    q.onMessage(handle('answer'));
    q.onError((err) => log.warn('socket_error', { address: a, err }));
    try {
      await q.bind(0, a);
      q.setMulticastInterface(a);
      q.setMulticastTTL(options.ttl ?? 1);
      q.setMulticastLoopback(true);
      queriers.push(q);
      sockets.push(q);
    } catch (err) {
      warnings.push(`cannot query from ${a}: ${(err as Error).message}`);
      await q.close();
    }
  }

  const queries = (options.queries ?? DEFAULT_DISCOVERY_QUERIES).map((ref) =>
    encodeQdp({ queryRefs: [ref] }),
  );
  const sendQueries = async (): Promise<void> => {
    for (const q of queriers) {
      for (const port of options.queryPorts ?? QDP_LISTEN_PORTS) {
        for (const bytes of queries) {
          try {
            await q.send(bytes, port, QDP_MULTICAST_GROUP);
          } catch (err) {
            log.warn('query_failed', { port, err });
          }
        }
      }
    }
  };

  await new Promise<void>((resolve) => {
    const requery = options.requeryMs ?? 1000;
    let timer = clock.setTimeout(function again() {
      void sendQueries();
      timer = clock.setTimeout(again, requery);
    }, 0);
    clock.setTimeout(() => {
      clock.clearTimeout(timer);
      resolve();
    }, options.timeoutMs);
  });

  await Promise.all(sockets.map((s) => s.close()));
  const list = [...devices.values()].sort(
    (x, y) => x.device.type.localeCompare(y.device.type) || x.device.name.localeCompare(y.device.name),
  );
  return { devices: list, dropped, warnings };
}

/** A plain-text table for people. */
export function formatDeviceTable(devices: DiscoveredDevice[]): string {
  const header = [
    'NAME',
    'TYPE',
    'PART NUMBER',
    'PLATFORM',
    'LAN A',
    'LAN B',
    'DESIGN',
    'SECURE',
    'FROM',
    'HEARD',
  ];
  const rows = devices.map((d) => [
    d.device.name,
    d.device.type,
    d.device.partNumber ?? '',
    d.device.platform ?? '',
    d.device.lanAIp ?? '',
    d.device.lanBIp ?? '',
    d.control ? `${d.control.designPretty || d.control.designCode} (${d.control.role})` : '',
    d.device.secureComm ?? '',
    `${d.from.address}:${d.from.port}`,
    `${(d.firstHeardAfterMs / 1000).toFixed(2)} s`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
