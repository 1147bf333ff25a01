/**
 * SAP shell: announces our AES67 sessions (every `intervalMs`, deletion on withdraw) and listens
 * for other announcers, keeping a table of sessions that expire when not re-announced. Sockets
 * come from a DatagramBinding, time from a ClockSource; bad datagrams are dropped and counted.
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';
import type { DatagramBinding, DatagramSocket } from '../net/datagram-binding.js';
import { decodeSap, encodeSap, sapHash, SAP_GROUP, SAP_MIME, SAP_PORT } from './sap-codec.js';
import { decodeSdp, type SdpStream } from './sdp-codec.js';

export interface HeardSession {
  key: string;
  origin: string;
  sdp: SdpStream;
  raw: string;
  lastHeardMs: number;
}

export interface SapServiceOptions {
  binding: DatagramBinding;
  clock: ClockSource;
  logger: Logger;
  /** Local interface address (multicast interface for sends and joins). */
  interfaceAddress: string;
  group?: string;
  port?: number;
  intervalMs?: number;
  /** Forget a heard session after this long without an announcement. */
  expireMs?: number;
  onSession?: (event: 'added' | 'changed' | 'removed', s: HeardSession) => void;
}

export class SapService {
  private sock: DatagramSocket | null = null;
  private timer: TimerHandle | null = null;
  private readonly announced = new Map<string, { sdp: string; hash: number }>();
  readonly heard = new Map<string, HeardSession>();
  readonly counters = { sent: 0, received: 0, dropped: {} as Record<string, number>, ownIgnored: 0 };

  constructor(private readonly o: SapServiceOptions) {}

  async start(): Promise<void> {
    const s = this.o.binding.createUdp4({ reuseAddr: true });
    s.onMessage((d) => this.onDatagram(d));
    s.onError((e) => this.o.logger.warn('sap_socket_error', { error: e }));
    await s.bind(this.o.port ?? SAP_PORT, '0.0.0.0');
    s.setMulticastInterface(this.o.interfaceAddress);
    s.setMulticastLoopback(true);
    s.setMulticastTTL(32);
    s.addMembership(this.o.group ?? SAP_GROUP, this.o.interfaceAddress);
    this.sock = s;
    this.schedule();
  }

  /** Announce (or update) one session under `id`. */
  announce(id: string, sdp: string): void {
    this.announced.set(id, { sdp, hash: sapHash(sdp) });
    this.sendOne(id, false);
  }

  withdraw(id: string): void {
    if (!this.announced.has(id)) return;
    this.sendOne(id, true);
    this.announced.delete(id);
  }

  private sendOne(id: string, deletion: boolean): void {
    const a = this.announced.get(id);
    if (!a || !this.sock) return;
    const pkt = encodeSap({
      deletion,
      msgIdHash: a.hash,
      origin: this.o.interfaceAddress,
      payloadType: SAP_MIME,
      sdp: a.sdp,
    });
    this.sock
      .send(pkt, this.o.port ?? SAP_PORT, this.o.group ?? SAP_GROUP)
      .then(() => this.counters.sent++)
      .catch((e: unknown) => this.o.logger.warn('sap_send_failed', { error: e }));
  }

  private schedule(): void {
    this.timer = this.o.clock.setTimeout(() => {
      for (const id of this.announced.keys()) this.sendOne(id, false);
      this.expire();
      this.schedule();
    }, this.o.intervalMs ?? 30000);
  }

  private drop(code: string): void {
    this.counters.dropped[code] = (this.counters.dropped[code] ?? 0) + 1;
  }

  private onDatagram(d: Buffer): void {
    try {
      const p = decodeSap(d);
      if (p.payloadType !== SAP_MIME) return this.drop('AUDIO_ERR_SAP_UNSUPPORTED');
      if (
        p.origin === this.o.interfaceAddress &&
        [...this.announced.values()].some((a) => a.hash === p.msgIdHash)
      ) {
        this.counters.ownIgnored++;
        return;
      }
      this.counters.received++;
      const key = `${p.origin}/${p.msgIdHash}`;
      if (p.deletion) {
        const s = this.heard.get(key);
        if (s) {
          this.heard.delete(key);
          this.o.onSession?.('removed', s);
        }
        return;
      }
      const sdp = decodeSdp(p.sdp);
      const prev = this.heard.get(key);
      const s: HeardSession = {
        key,
        origin: p.origin,
        sdp,
        raw: p.sdp,
        lastHeardMs: this.o.clock.monotonicMs(),
      };
      this.heard.set(key, s);
      if (!prev) this.o.onSession?.('added', s);
      else if (prev.raw !== p.sdp) this.o.onSession?.('changed', s);
    } catch (e) {
      this.drop((e as { code?: string }).code ?? 'UNKNOWN');
    }
  }

  private expire(): void {
    const now = this.o.clock.monotonicMs();
    for (const [k, s] of this.heard)
      if (now - s.lastHeardMs > (this.o.expireMs ?? 300000)) {
        this.heard.delete(k);
        this.o.onSession?.('removed', s);
      }
  }

  async close(): Promise<void> {
    for (const id of [...this.announced.keys()]) this.withdraw(id);
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    await new Promise((r) => setImmediate(r));
    await this.sock?.close();
    this.sock = null;
  }
}
