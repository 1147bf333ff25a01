/**
 * The QDP shell: announces the peripheral once per second on each LAN from
 * source port 6504, answers matching queries by unicast from 6504, and tracks
 * the Cores it hears. Sockets come from a DatagramBinding, time from a
 * ClockSource, addresses from an InterfaceLister, so all of it runs in unit
 * tests on a fake network in virtual time.
 *
 * Bad input never escapes a socket handler: a malformed datagram is dropped,
 * counted by error code and logged (rate-limited).
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { LanConfig } from '../config/board-types.js';
import type { Logger } from '../log/logger.js';
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../net/datagram-binding.js';
import { resolveLanAddress, sameSubnet, type InterfaceLister } from '../net/interfaces.js';
import { scheduleStep } from './announce-schedule.js';
import { CoreTracker, type CoreEvent, type HeardCore } from './core-tracker.js';
import { decodeQdp, encodeQdp, QdpDecodeError } from './qdp-codec.js';
import { queryMatches } from './qdp-query.js';
import {
  QDP_ANNOUNCE_PORT,
  QDP_LISTEN_PORTS,
  QDP_MULTICAST_GROUP,
  QDP_SOURCE_PORT,
  type QdpControl,
  type QdpDevice,
  type QdpPacket,
} from './qdp-types.js';

export type LanId = 'a' | 'b';

/** Senders whose last inert packet is remembered (a bounded cache: cleared when full). */
const INERT_SENDERS_MAX = 1024;

/** What the rest of the runtime says about the device; called for every packet built. */
export interface QdpSelfDescription {
  device: Omit<QdpDevice, 'lanAIp' | 'lanBIp'>;
  control: QdpControl | null;
}

export interface QdpServiceOptions {
  binding: DatagramBinding;
  clock: ClockSource;
  logger: Logger;
  interfaces: InterfaceLister;
  lans: Array<{ id: LanId; config: LanConfig }>;
  describe: () => QdpSelfDescription;
  ttl: number;
  periodMs?: number;
  rescanMs?: number;
  listenPorts?: readonly number[];
  sourcePort?: number;
  announcePort?: number;
  group?: string;
  /** Answers allowed per second (token bucket), against query floods. */
  maxAnswersPerSecond?: number;
  /**
   * Wake this many ms before each grid point and spin the rest, so timer
   * granularity does not show up as announce jitter (≤ 0.2% of a core at 2 ms).
   * 0 (the default) for virtual-time tests.
   */
  spinLeadMs?: number;
  /** Called after each announcement was handed to the OS (benchmarks, health). */
  onAnnounced?: (info: { lan: LanId; atMs: number; index: number }) => void;
  onCoreEvent?: (event: CoreEvent) => void;
}

export interface QdpCounters {
  announcementsSent: number;
  announceErrors: number;
  announceMissed: number;
  received: number;
  ownIgnored: number;
  /** Repeats of a sender's last inert packet (not a Core, no query), skipped without parsing. */
  repeatsSkipped: number;
  queriesAnswered: number;
  answersThrottled: number;
  dropped: Record<string, number>;
}

interface LanLink {
  id: LanId;
  config: LanConfig;
  address: string | null;
  netmask: string;
  socket: DatagramSocket | null;
  opening: Promise<void> | null;
  failing: boolean;
}

export class QdpService {
  readonly counters: QdpCounters = {
    announcementsSent: 0,
    announceErrors: 0,
    announceMissed: 0,
    received: 0,
    ownIgnored: 0,
    repeatsSkipped: 0,
    queriesAnswered: 0,
    answersThrottled: 0,
    dropped: {},
  };

  private readonly o: Required<Omit<QdpServiceOptions, 'onAnnounced' | 'onCoreEvent'>> &
    Pick<QdpServiceOptions, 'onAnnounced' | 'onCoreEvent'>;
  private readonly log: Logger;
  private readonly links: LanLink[];
  private readonly listeners: DatagramSocket[] = [];
  private readonly tracker = new CoreTracker();
  private announceTimer: TimerHandle | null = null;
  private rescanTimer: TimerHandle | null = null;
  private anchorMs = 0;
  private lastIndex = -1;
  private dueAt: number | null = null;
  private running = false;
  private tokens: number;
  private tokensAtMs = 0;
  private lastAnnounceMs: number | null = null;
  private dropLogAtMs = -Infinity;
  /**
   * Per sender (address:port), the bytes of its last packet that had no effect here (another
   * peripheral's announcement: not a Core, no query). Peripherals repeat the same bytes every
   * second, so on a bench of N peripherals this saves N-1 XML parses per peripheral per second.
   */
  private readonly inert = new Map<string, Buffer>();

  constructor(options: QdpServiceOptions) {
    this.o = {
      periodMs: 1000,
      rescanMs: 2000,
      listenPorts: QDP_LISTEN_PORTS,
      sourcePort: QDP_SOURCE_PORT,
      announcePort: QDP_ANNOUNCE_PORT,
      group: QDP_MULTICAST_GROUP,
      maxAnswersPerSecond: 50,
      spinLeadMs: 0,
      ...options,
    };
    this.log = options.logger.child({ module: 'qdp' });
    this.links = options.lans.map((l) => ({
      id: l.id,
      config: l.config,
      address: null,
      netmask: '255.255.255.255',
      socket: null,
      opening: null,
      failing: false,
    }));
    this.tokens = this.o.maxAnswersPerSecond;
  }

  /** Bind the listeners and the per-LAN sockets, send the first announcement at once. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    for (const port of this.o.listenPorts) {
      const sock = this.o.binding.createUdp4({ reuseAddr: true });
      sock.onMessage((data, from) => this.handleDatagram(data, from));
      sock.onError((err) => this.log.warn('socket_error', { port, err }));
      try {
        await sock.bind(port);
        this.listeners.push(sock);
      } catch (err) {
        this.log.error('listen_failed', { port, err });
        await sock.close();
      }
    }
    await this.rescan();
    this.anchorMs = this.o.clock.monotonicMs();
    this.lastIndex = -1;
    this.dueAt = null;
    this.tick();
    this.scheduleRescan();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.announceTimer) this.o.clock.clearTimeout(this.announceTimer);
    if (this.rescanTimer) this.o.clock.clearTimeout(this.rescanTimer);
    this.announceTimer = this.rescanTimer = null;
    const closing: Array<Promise<void>> = this.listeners.splice(0).map((s) => s.close());
    for (const link of this.links) {
      if (link.socket) closing.push(link.socket.close());
      link.socket = null;
    }
    await Promise.all(closing);
  }

  /** Announce right now, outside the grid (design assigned, name changed). */
  announceNow(): void {
    if (this.running) void this.sendAnnouncement(-1);
  }

  cores(): HeardCore[] {
    return this.tracker.list();
  }

  lanAddresses(): Record<LanId, string | null> {
    const out: Record<LanId, string | null> = { a: null, b: null };
    for (const l of this.links) out[l.id] = l.socket ? l.address : null;
    return out;
  }

  listeningPorts(): number[] {
    return this.listeners.map((s) => s.local().port);
  }

  /** Health for the watchdog: listeners bound and announcements flowing on a live LAN. */
  health(): { ok: boolean; reason?: string } {
    if (!this.running) return { ok: false, reason: 'qdp stopped' };
    if (this.listeners.length === 0) return { ok: false, reason: 'no QDP listener bound' };
    const live = this.links.some((l) => l.socket);
    if (!live) return { ok: true }; // no LAN address yet: not a fault of ours
    const age = this.lastAnnounceMs === null ? Infinity : this.o.clock.monotonicMs() - this.lastAnnounceMs;
    if (age > this.o.periodMs * 5) return { ok: false, reason: `no announcement for ${Math.round(age)} ms` };
    return { ok: true };
  }

  /** The packet we send now (also the answer to a matching query). */
  buildPacket(): QdpPacket {
    const self = this.o.describe();
    const addr = this.lanAddresses();
    const device: QdpDevice = { ...self.device, lanAIp: addr.a ?? '', lanBIp: addr.b ?? '' };
    const ordered: QdpDevice = {
      name: device.name,
      type: device.type,
      platform: device.platform,
      partNumber: device.partNumber,
      ref: device.ref,
      isVirtual: device.isVirtual,
      lanAIp: device.lanAIp,
      lanALldp: device.lanALldp ?? '',
      lanBIp: device.lanBIp,
      lanBLldp: device.lanBLldp ?? '',
      auxAIp: device.auxAIp ?? '',
      auxALldp: device.auxALldp ?? '',
      auxBIp: device.auxBIp ?? '',
      auxBLldp: device.auxBLldp ?? '',
      periphCfgUrl: device.periphCfgUrl,
      secureComm: device.secureComm,
    };
    for (const k of Object.keys(ordered) as Array<keyof QdpDevice>) {
      if (ordered[k] === undefined) delete ordered[k];
    }
    const packet: QdpPacket = { device: ordered, queryRefs: [] };
    if (self.control) packet.control = self.control;
    return packet;
  }

  private tick(): void {
    if (!this.running) return;
    const lead = this.o.spinLeadMs;
    if (lead > 0 && this.dueAt !== null) {
      // Bounded by real time, so a clock that does not move cannot hang us here.
      const limit = performance.now() + lead + 1;
      while (this.o.clock.monotonicMs() < this.dueAt && performance.now() < limit) {
        /* spin to the grid point */
      }
    }
    const now = this.o.clock.monotonicMs();
    const step = scheduleStep(this.anchorMs, this.o.periodMs, this.lastIndex, now);
    if (step.missed > 0) {
      this.counters.announceMissed += step.missed;
      this.log.warn('announce_late', { missed: step.missed });
    }
    this.lastIndex = step.index;
    void this.sendAnnouncement(step.index);
    this.dueAt = step.nextAt;
    this.announceTimer = this.o.clock.setTimeout(() => this.tick(), step.nextAt - now - lead);
  }

  private async sendAnnouncement(index: number): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = encodeQdp(this.buildPacket());
    } catch (err) {
      this.counters.announceErrors++;
      this.log.error('announce_encode_failed', { err });
      return;
    }
    for (const link of this.links) {
      const sock = link.socket;
      if (!sock) continue;
      try {
        await sock.send(bytes, this.o.announcePort, this.o.group);
        this.counters.announcementsSent++;
        const atMs = this.o.clock.monotonicMs();
        this.lastAnnounceMs = atMs;
        if (link.failing) {
          link.failing = false;
          this.log.info('state', {
            lan: link.id,
            from: 'failing',
            to: 'announcing',
            cause: 'send succeeded',
          });
        }
        this.o.onAnnounced?.({ lan: link.id, atMs, index });
      } catch (err) {
        this.counters.announceErrors++;
        if (!link.failing) {
          link.failing = true;
          this.log.warn('state', {
            lan: link.id,
            from: 'announcing',
            to: 'failing',
            cause: 'send failed',
            err,
          });
        }
      }
    }
  }

  private scheduleRescan(): void {
    if (!this.running) return;
    this.rescanTimer = this.o.clock.setTimeout(() => {
      void this.rescan().finally(() => {
        for (const ev of this.tracker.expire(this.o.clock.monotonicMs())) this.emitCore(ev);
        this.scheduleRescan();
      });
    }, this.o.rescanMs);
  }

  /** Follow interfaces and addresses coming and going. */
  async rescan(): Promise<void> {
    for (const link of this.links) {
      if (link.opening) {
        await link.opening;
        continue;
      }
      const found = resolveLanAddress(link.config, this.o.interfaces);
      const address = found?.address ?? null;
      if (address === link.address && (link.socket || address === null)) continue;
      link.opening = this.reopen(link, address, found?.netmask ?? '255.255.255.255').finally(() => {
        link.opening = null;
      });
      await link.opening;
    }
  }

  private async reopen(link: LanLink, address: string | null, netmask: string): Promise<void> {
    const before = link.address;
    if (link.socket) {
      await link.socket.close();
      link.socket = null;
    }
    if (before) {
      for (const l of this.listeners) {
        try {
          l.dropMembership(this.o.group, before);
        } catch {}
      }
    }
    link.address = address;
    link.netmask = netmask;
    if (!address) {
      this.log.info('state', { lan: link.id, from: before ?? 'down', to: 'down', cause: 'no address' });
      return;
    }
    const sock = this.o.binding.createUdp4({ reuseAddr: false });
    sock.onMessage((data, from) => this.handleDatagram(data, from));
    sock.onError((err) => this.log.warn('socket_error', { lan: link.id, err }));
    try {
      await sock.bind(this.o.sourcePort, address);
      sock.setMulticastInterface(address);
      sock.setMulticastTTL(this.o.ttl);
      sock.setMulticastLoopback(true);
    } catch (err) {
      await sock.close();
      link.address = null; // try again on the next rescan
      this.log.error('lan_open_failed', { lan: link.id, address, port: this.o.sourcePort, err });
      return;
    }
    for (const l of this.listeners) {
      try {
        l.addMembership(this.o.group, address);
      } catch (err) {
        this.log.warn('join_failed', { lan: link.id, address, port: l.local().port, err });
      }
    }
    link.socket = sock;
    this.log.info('state', {
      lan: link.id,
      from: before ?? 'down',
      to: address,
      cause: before ? 'address changed' : 'address up',
      interface: link.config.interface,
    });
    if (this.running && this.lastIndex >= 0) this.announceNow();
  }

  private isOwn(from: RemoteInfo): boolean {
    return from.port === this.o.sourcePort && this.links.some((l) => l.socket && l.address === from.address);
  }

  private drop(code: string, from: RemoteInfo, reason: string): void {
    this.counters.dropped[code] = (this.counters.dropped[code] ?? 0) + 1;
    const now = this.o.clock.monotonicMs();
    if (now - this.dropLogAtMs >= 1000) {
      this.dropLogAtMs = now;
      this.log.warn('packet_dropped', { code, reason, from: `${from.address}:${from.port}` });
    }
  }

  /** Socket handler: never throws. */
  handleDatagram(data: Buffer, from: RemoteInfo): void {
    try {
      this.counters.received++;
      if (this.isOwn(from)) {
        this.counters.ownIgnored++;
        return;
      }
      const key = `${from.address}:${from.port}`;
      const last = this.inert.get(key);
      if (last && last.equals(data)) {
        this.counters.repeatsSkipped++;
        return;
      }
      let packet: QdpPacket;
      try {
        packet = decodeQdp(data);
      } catch (err) {
        if (err instanceof QdpDecodeError) this.drop(err.code, from, err.message);
        else this.drop('QDP_ERR_INTERNAL', from, String(err));
        return;
      }
      const now = this.o.clock.monotonicMs();
      const inert = packet.device?.type !== 'core' && packet.queryRefs.length === 0;
      if (inert) {
        if (this.inert.size >= INERT_SENDERS_MAX && !last) this.inert.clear();
        this.inert.set(key, Buffer.from(data));
      } else if (last) this.inert.delete(key);
      for (const ev of this.tracker.observe(packet, from.address, now)) this.emitCore(ev);
      if (packet.queryRefs.length > 0) this.maybeAnswer(packet, from, now);
    } catch (err) {
      this.drop('QDP_ERR_INTERNAL', from, String(err));
    }
  }

  private maybeAnswer(packet: QdpPacket, from: RemoteInfo, now: number): void {
    const self = this.o.describe();
    const me = {
      name: self.device.name,
      type: self.device.type,
      designCode: self.control?.designCode ?? null,
      role: self.control?.role ?? null,
    };
    if (!packet.queryRefs.some((q) => queryMatches(q, me))) return;
    this.tokens = Math.min(
      this.o.maxAnswersPerSecond,
      this.tokens + ((now - this.tokensAtMs) / 1000) * this.o.maxAnswersPerSecond,
    );
    this.tokensAtMs = now;
    if (this.tokens < 1) {
      this.counters.answersThrottled++;
      return;
    }
    this.tokens -= 1;
    const link =
      this.links.find((l) => l.socket && l.address && sameSubnet(l.address, from.address, l.netmask)) ??
      this.links.find((l) => l.socket);
    if (!link?.socket) return;
    const bytes = encodeQdp(this.buildPacket());
    link.socket.send(bytes, from.port, from.address).then(
      () => {
        this.counters.queriesAnswered++;
      },
      (err: unknown) => this.log.warn('answer_failed', { to: `${from.address}:${from.port}`, err }),
    );
  }

  private emitCore(ev: CoreEvent): void {
    const c = ev.core;
    const fields = {
      name: c.name,
      address: c.address,
      designCode: c.designCode,
      primary: c.primary,
      redundant: c.redundant,
      ...(ev.event === 'core_changed' ? { changed: ev.changed } : {}),
    };
    if (ev.event === 'core_lost') this.log.warn(ev.event, fields);
    else this.log.info(ev.event, fields);
    this.o.onCoreEvent?.(ev);
  }
}
