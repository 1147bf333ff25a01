/**
 * RtpReceiver: the receive shell. Datagrams from one or two sockets (LAN A and, with redundancy,
 * LAN B) feed one JitterBuffer; a playout tick every `tickMs` hands due packets to the sink; a
 * Q-LAN receiver acks to the sender's RTCP port 100 times per second; a silent multicast stream is
 * re-joined. Never throws from a socket handler.
 */
import type { ClockSource, TimerHandle } from '../clock/clock.js';
import type { Logger } from '../log/logger.js';
import type { DatagramBinding, DatagramSocket, RemoteInfo } from '../net/datagram-binding.js';
import { JitterBuffer, type PlayoutSink, type ReceiverCounters } from './jitter-buffer.js';
import type { MediaClock } from './media-clock.js';
import { rtpTimestampAt } from './media-timeline.js';
import { encodeRtcp } from './rtcp-codec.js';
import type { AudioFormat } from './rtp-codec.js';
import { isMulticast } from './address.js';

export interface ReceiverPath {
  /** Local address to bind (and the multicast interface address). */
  bindAddress: string;
  port: number;
  /** Multicast group to join, or null for unicast. */
  group: string | null;
}

export interface RtpReceiverOptions {
  binding: DatagramBinding;
  clock: ClockSource;
  mediaClock: MediaClock;
  logger: Logger;
  format: AudioFormat;
  payloadType: number;
  delayFrames: number;
  paths: ReceiverPath[];
  sink: PlayoutSink;
  /** Playout tick period, ms (0: as often as the timer allows). Default 1. */
  tickMs?: number;
  /** No timer of its own: the owner calls `onTick(nowTs)` (the engine's mix tick). */
  externalTick?: boolean;
  /** Send Q-LAN acks (RTCP APP) to the sender's port + 1 every `ackMs`. */
  ack?: { ssrc: number; everyMs: number } | null;
  /** Re-join multicast (and re-anchor) after this long without packets. */
  silenceMs?: number;
  /**
   * Local media timestamp now; default `rtpTimestampAt(mediaClock.nowNs())`. The receive worker
   * passes an allocation-free one (`monotonicTsSource`).
   */
  nowTs?: () => number;
}

export class RtpReceiver {
  readonly jitter: JitterBuffer;
  private sockets: DatagramSocket[] = [];
  private rtcp: DatagramSocket | null = null;
  private tick: TimerHandle | null = null;
  private lastPacketMs = 0;
  private lastAckMs = 0;
  private sender: RemoteInfo | null = null;
  private closed = false;
  rejoins = 0;

  constructor(private readonly o: RtpReceiverOptions) {
    this.jitter = new JitterBuffer({
      format: o.format,
      payloadType: o.payloadType,
      delayFrames: o.delayFrames,
    });
  }

  counters(): ReceiverCounters & { rejoins: number } {
    return {
      ...this.jitter.counters,
      malformed: { ...this.jitter.counters.malformed },
      rejoins: this.rejoins,
    };
  }

  async start(): Promise<void> {
    for (const [i, p] of this.o.paths.entries()) {
      const s = this.o.binding.createUdp4({ reuseAddr: true });
      const path = (i === 0 ? 0 : 1) as 0 | 1;
      s.onMessage((data, from) => this.onPacket(data, from, path));
      s.onError((err) => this.o.logger.warn('rtp_socket_error', { error: err }));
      await s.bind(p.port, p.group ? '0.0.0.0' : p.bindAddress);
      if (p.group) s.addMembership(p.group, p.bindAddress);
      this.sockets.push(s);
    }
    if (this.o.ack) {
      this.rtcp = this.o.binding.createUdp4({ reuseAddr: true });
      this.rtcp.onError(() => undefined);
      await this.rtcp.bind(0, this.o.paths[0]!.bindAddress);
    }
    this.lastPacketMs = this.o.clock.monotonicMs();
    this.schedule();
  }

  private nowTs(): number {
    return this.o.nowTs ? this.o.nowTs() : rtpTimestampAt(this.o.mediaClock.nowNs());
  }

  private onPacket(data: Buffer, from: RemoteInfo, path: 0 | 1): void {
    try {
      this.lastPacketMs = this.o.clock.monotonicMs();
      if (this.jitter.push(data, this.nowTs(), path) && path === 0) this.sender = from;
    } catch (e) {
      this.o.logger.warn('rtp_packet_error', { error: e });
    }
  }

  private schedule(): void {
    if (this.closed || this.o.externalTick) return;
    this.tick = this.o.clock.setTimeout(() => this.onTick(), this.o.tickMs ?? 1);
  }

  /** One playout step at local media timestamp `nowTs`; public for a mixer and virtual-time tests. */
  onTick(nowTs: number = this.nowTs()): void {
    try {
      this.jitter.playout(nowTs, this.o.sink);
      const now = this.o.clock.monotonicMs();
      if (this.o.ack && this.rtcp && this.sender && now - this.lastAckMs >= this.o.ack.everyMs) {
        this.lastAckMs = now;
        const c = this.jitter.counters;
        const pkt = encodeRtcp([
          {
            type: 'qlan-ack',
            ssrc: this.o.ack.ssrc,
            mediaSsrc: this.jitter.currentSsrc ?? 0,
            extendedHighestSeq: c.extendedHighestSeq,
            received: c.received,
            lost: c.lost,
            late: c.late,
            jitter: c.jitter,
          },
        ]);
        this.rtcp.send(pkt, this.sender.port + 1, this.sender.address).catch(() => undefined);
      }
      if (now - this.lastPacketMs > (this.o.silenceMs ?? 1000)) this.rejoin();
    } catch (e) {
      this.o.logger.warn('rtp_tick_error', { error: e });
    }
    this.schedule();
  }

  private rejoin(): void {
    this.lastPacketMs = this.o.clock.monotonicMs();
    if (this.jitter.anchored) this.jitter.reset();
    for (const [i, p] of this.o.paths.entries()) {
      if (!p.group || !isMulticast(p.group)) continue;
      const s = this.sockets[i]!;
      try {
        s.dropMembership(p.group, p.bindAddress);
      } catch {
        // not a member any more (interface went away): join again below
      }
      try {
        s.addMembership(p.group, p.bindAddress);
        this.rejoins++;
        this.o.logger.info('multicast_rejoined', { group: p.group, interface: p.bindAddress });
      } catch (e) {
        this.o.logger.warn('multicast_rejoin_failed', { group: p.group, error: e });
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.tick) this.o.clock.clearTimeout(this.tick);
    await Promise.all([...this.sockets, ...(this.rtcp ? [this.rtcp] : [])].map((s) => s.close()));
    this.sockets = [];
  }
}
