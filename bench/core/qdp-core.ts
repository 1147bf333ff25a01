/**
 * QDP as a Core: announces `<device type=core>` with the design's control block once a second
 * from port 6504 on the Core's address, queries for peripherals (`device.ioframe*`) every few
 * seconds, and hears every announcement and answer on 2467-2470. Peripherals and other Cores
 * heard go to pure trackers (`PeripheralTracker` here, firmware's `CoreTracker` for Cores), whose
 * events the Core acts on. Loopback multicast only on the bench; sockets come from the firmware's
 * DatagramBinding seam, time from a ClockSource.
 */
import type { ClockSource, TimerHandle } from '../../firmware/clock/clock.js';
import type { Logger } from '../../firmware/log/logger.js';
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../../firmware/net/datagram-binding.js';
import { CoreTracker, type CoreEvent, type HeardCore } from '../../firmware/qdp/core-tracker.js';
import { decodeQdp, encodeQdp } from '../../firmware/qdp/qdp-codec.js';
import { controlRef, deviceRef } from '../../firmware/qdp/qdp-query.js';
import {
  QDP_ANNOUNCE_PORT,
  QDP_LISTEN_PORTS,
  QDP_MULTICAST_GROUP,
  QDP_SOURCE_PORT,
  type QdpPacket,
} from '../../firmware/qdp/qdp-types.js';

export interface HeardPeripheral {
  name: string;
  type: string;
  partNumber: string | null;
  address: string;
  secureComm: string | null;
  designCode: string | null;
  role: string | null;
  firstSeenMs: number;
  lastSeenMs: number;
}

export type PeripheralEvent =
  | { event: 'peripheral_discovered'; peripheral: HeardPeripheral }
  | { event: 'peripheral_changed'; peripheral: HeardPeripheral; changed: string[] }
  | { event: 'peripheral_lost'; peripheral: HeardPeripheral };

/** Pure: the non-Core devices heard, forgotten after `silenceMs` without a packet. */
export class PeripheralTracker {
  private readonly heard = new Map<string, HeardPeripheral>();
  constructor(private readonly silenceMs = 5000) {}

  observe(packet: QdpPacket, fromAddress: string, nowMs: number): PeripheralEvent[] {
    const d = packet.device;
    if (!d || d.type === 'core') return [];
    const key = d.name.toLowerCase();
    const next: HeardPeripheral = {
      name: d.name,
      type: d.type,
      partNumber: d.partNumber ?? null,
      address: d.lanAIp || fromAddress,
      secureComm: d.secureComm ?? null,
      designCode: packet.control?.designCode ?? null,
      role: packet.control?.role ?? null,
      firstSeenMs: nowMs,
      lastSeenMs: nowMs,
    };
    const prev = this.heard.get(key);
    if (!prev) {
      this.heard.set(key, next);
      return [{ event: 'peripheral_discovered', peripheral: { ...next } }];
    }
    next.firstSeenMs = prev.firstSeenMs;
    this.heard.set(key, next);
    const fields = ['partNumber', 'address', 'secureComm', 'designCode', 'role'] as const;
    const changed = fields.filter((f) => prev[f] !== next[f]);
    return changed.length ? [{ event: 'peripheral_changed', peripheral: { ...next }, changed }] : [];
  }

  expire(nowMs: number): PeripheralEvent[] {
    const out: PeripheralEvent[] = [];
    for (const [k, p] of this.heard) {
      if (nowMs - p.lastSeenMs > this.silenceMs) {
        this.heard.delete(k);
        out.push({ event: 'peripheral_lost', peripheral: { ...p } });
      }
    }
    return out;
  }

  get(name: string): HeardPeripheral | null {
    const p = this.heard.get(name.toLowerCase());
    return p ? { ...p } : null;
  }

  list(): HeardPeripheral[] {
    return [...this.heard.values()].map((p) => ({ ...p })).sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** What the Core says about itself in each announcement. */
export interface CoreSelf {
  name: string;
  designName: string;
  designCode: string;
  /** Announced as `<primary>`: this Core is the active one of its pair. */
  active: boolean;
  redundant: boolean;
  secure: boolean;
  webUrl: string;
}

export interface QdpCoreOptions {
  binding: DatagramBinding;
  clock: ClockSource;
  logger: Logger;
  /** The Core's (loopback) address: announcements go out from here. */
  address: string;
  describe: () => CoreSelf;
  periodMs?: number;
  queryEveryMs?: number;
  peripheralSilenceMs?: number;
  coreSilenceMs?: number;
  ttl?: number;
  listenPorts?: readonly number[];
  sourcePort?: number;
  onPeripheral?: (ev: PeripheralEvent) => void;
  onCore?: (ev: CoreEvent) => void;
  /** Every packet from another Core (the redundancy watch needs each heartbeat, not just changes). */
  onCorePacket?: (core: HeardCore, active: boolean) => void;
}

export const PERIPHERAL_QUERY = 'device.ioframe*';

export class QdpCore {
  readonly peripherals: PeripheralTracker;
  readonly cores: CoreTracker;
  readonly counters = { announced: 0, queried: 0, received: 0, dropped: 0 };
  private readonly log: Logger;
  private readonly listeners: DatagramSocket[] = [];
  private sender: DatagramSocket | null = null;
  private timer: TimerHandle | null = null;
  private running = false;
  private lastQueryMs = -Infinity;
  private readonly o: Required<Omit<QdpCoreOptions, 'onPeripheral' | 'onCore' | 'onCorePacket'>> &
    Pick<QdpCoreOptions, 'onPeripheral' | 'onCore' | 'onCorePacket'>;

  constructor(options: QdpCoreOptions) {
    this.o = {
      periodMs: 1000,
      queryEveryMs: 2000,
      peripheralSilenceMs: 5000,
      coreSilenceMs: 5000,
      ttl: 1,
      listenPorts: QDP_LISTEN_PORTS,
      sourcePort: QDP_SOURCE_PORT,
      ...options,
    };
    this.log = options.logger.child({ module: 'core-qdp' });
    this.peripherals = new PeripheralTracker(this.o.peripheralSilenceMs);
    this.cores = new CoreTracker(this.o.coreSilenceMs);
  }

  async start(): Promise<void> {
    if (this.running) return;
    for (const port of this.o.listenPorts) {
      const s = this.o.binding.createUdp4({ reuseAddr: true });
      s.onMessage((d, from) => this.onDatagram(d, from));
      s.onError((err) => this.log.warn('socket_error', { port, err }));
      try {
        await s.bind(port);
        s.addMembership(QDP_MULTICAST_GROUP, this.o.address);
        this.listeners.push(s);
      } catch (err) {
        this.log.warn('listen_failed', { port, err });
        await s.close();
      }
    }
    const sender = this.o.binding.createUdp4({ reuseAddr: false });
    sender.onMessage((d, from) => this.onDatagram(d, from));
    sender.onError((err) => this.log.warn('socket_error', { port: this.o.sourcePort, err }));
    await sender.bind(this.o.sourcePort, this.o.address);
    sender.setMulticastInterface(this.o.address);
    sender.setMulticastTTL(this.o.ttl);
    sender.setMulticastLoopback(true);
    this.sender = sender;
    this.running = true;
    this.log.info('qdp_started', {
      address: this.o.address,
      listening: this.listeners.map((l) => l.local().port),
    });
    this.tick();
  }

  /** Stop at once (a dying Core: no goodbye packet, it simply falls silent). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    const closing = this.listeners.splice(0).map((s) => s.close());
    if (this.sender) closing.push(this.sender.close());
    this.sender = null;
    await Promise.all(closing);
  }

  /** Announce now (role or design changed). */
  announceNow(): void {
    if (this.running) void this.send(false);
  }

  packet(withQuery: boolean): QdpPacket {
    const me = this.o.describe();
    const ref = deviceRef('core', me.name);
    return {
      device: {
        name: me.name,
        type: 'core',
        platform: 'qperiph-core',
        partNumber: 'qperiph-core-emulated',
        ref,
        isVirtual: true,
        lanAIp: this.o.address,
        lanBIp: '',
        webCfgUrl: me.webUrl,
        secureComm: me.secure ? 'enabled' : 'disabled',
      },
      control: {
        role: 'core',
        designPretty: me.designName,
        designCode: me.designCode,
        primary: me.active,
        redundant: me.redundant,
        deviceRef: ref,
        ref: controlRef(me.designCode, me.active ? 'core.primary' : 'core'),
      },
      queryRefs: withQuery ? [PERIPHERAL_QUERY] : [],
    };
  }

  private tick(): void {
    if (!this.running) return;
    const now = this.o.clock.monotonicMs();
    const query = now - this.lastQueryMs >= this.o.queryEveryMs;
    if (query) this.lastQueryMs = now;
    void this.send(query);
    for (const ev of this.peripherals.expire(now)) this.emitPeripheral(ev);
    for (const ev of this.cores.expire(now)) this.emitCore(ev);
    this.timer = this.o.clock.setTimeout(() => this.tick(), this.o.periodMs);
  }

  private async send(withQuery: boolean): Promise<void> {
    const s = this.sender;
    if (!s) return;
    try {
      const bytes = encodeQdp(this.packet(withQuery));
      // Queries go to every listen port, as the discovery client does; the announcement to 2467.
      const ports = withQuery ? this.o.listenPorts : [QDP_ANNOUNCE_PORT];
      for (const port of ports) await s.send(bytes, port, QDP_MULTICAST_GROUP);
      this.counters.announced++;
      if (withQuery) this.counters.queried++;
    } catch (err) {
      this.log.warn('announce_failed', { err });
    }
  }

  private onDatagram(data: Buffer, from: RemoteInfo): void {
    this.counters.received++;
    if (from.address === this.o.address && from.port === this.o.sourcePort) return; // our own
    let packet: QdpPacket;
    try {
      packet = decodeQdp(data);
    } catch {
      this.counters.dropped++;
      return;
    }
    if (!packet.device) return;
    const now = this.o.clock.monotonicMs();
    if (packet.device.type === 'core') {
      for (const ev of this.cores.observe(packet, from.address, now)) this.emitCore(ev);
      const c = this.cores.list().find((x) => x.name === packet.device!.name);
      if (c) this.o.onCorePacket?.(c, packet.control?.primary === true);
      return;
    }
    for (const ev of this.peripherals.observe(packet, from.address, now)) this.emitPeripheral(ev);
  }

  private emitPeripheral(ev: PeripheralEvent): void {
    const p = ev.peripheral;
    this.log.info(ev.event, { name: p.name, address: p.address, partNumber: p.partNumber });
    this.o.onPeripheral?.(ev);
  }

  private emitCore(ev: CoreEvent): void {
    this.log.info(ev.event, { name: ev.core.name, address: ev.core.address, primary: ev.core.primary });
    this.o.onCore?.(ev);
  }
}
