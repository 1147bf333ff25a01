/**
 * The receive half of the Core's audio peer, in whichever thread runs it: the firmware's
 * RtpReceiver (jitter buffer, Q-LAN acks) behind a tap that times every arriving packet on the
 * media clock and tracks its sequence number, plus the level meters of what plays out. It answers
 * `snapshot()` with plain data (structured-cloneable), so the same class serves the main thread
 * (tests with a fake network) and the receive worker (rx-worker.ts).
 */
import type { MediaClock } from '../../../firmware/audio/media-clock.js';
import { rtpTimestampAt, tsDiff } from '../../../firmware/audio/media-timeline.js';
import { RtpReceiver } from '../../../firmware/audio/receiver.js';
import type { AudioFormat } from '../../../firmware/audio/rtp-codec.js';
import type { ClockSource } from '../../../firmware/clock/clock.js';
import type { Logger } from '../../../firmware/log/logger.js';
import type { DatagramBinding } from '../../../firmware/net/datagram-binding.js';
import {
  LevelTracker,
  SeqTracker,
  TransitStats,
  type Level,
  type RemoteSender,
  type WireStats,
} from './peer-stats.js';
import { tapBinding } from './tap-binding.js';

export interface RxSideOptions {
  format: AudioFormat;
  payloadType: number;
  delayFrames: number;
  bind: { address: string; port: number; group: string | null };
  /** Q-LAN: ack the sender 100 times a second with this SSRC. */
  ackSsrc: number | null;
}

export interface RxCounters {
  received: number;
  extendedHighestSeq: number;
  timestampErrors: number;
  lost: number;
  late: number;
  duplicate: number;
  reordered: number;
  playedPackets: number;
  jitter: number;
  malformed: Record<string, number>;
  ssrcErrors: number;
}

export interface TransitSummary {
  samples: number;
  meanMs: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  minMs: number | null;
  maxMs: number | null;
}

/** What the receive side reports: plain data, safe to post between threads. */
export interface RxSnapshot {
  counters: RxCounters;
  transit: TransitSummary;
  /** Wire figures judged up to the peripheral sender's counters; null without them. */
  wire: WireStats | null;
  received: Level[];
  receivedPeakHold: number[];
  receivedHz: number;
  /** Distinct packets seen on the wire (before the jitter buffer). */
  arrived: number;
}

export function emptyRxSnapshot(channels: number): RxSnapshot {
  return {
    counters: {
      received: 0,
      extendedHighestSeq: 0,
      timestampErrors: 0,
      lost: 0,
      late: 0,
      duplicate: 0,
      reordered: 0,
      playedPackets: 0,
      jitter: 0,
      malformed: {},
      ssrcErrors: 0,
    },
    transit: { samples: 0, meanMs: null, p50Ms: null, p99Ms: null, minMs: null, maxMs: null },
    wire: null,
    received: Array.from({ length: channels }, () => ({ peakDb: -Infinity, rmsDb: -Infinity })),
    receivedPeakHold: Array.from({ length: channels }, () => -Infinity),
    receivedHz: 0,
    arrived: 0,
  };
}

export class RxSide {
  private readonly transit = new TransitStats();
  private readonly seq = new SeqTracker();
  private readonly levels: LevelTracker;
  private readonly receiver: RtpReceiver;

  constructor(
    private readonly o: RxSideOptions,
    private readonly env: {
      binding: DatagramBinding;
      clock: ClockSource;
      mediaClock: MediaClock;
      logger: Logger;
    },
  ) {
    this.levels = new LevelTracker(o.format.channels);
    this.receiver = new RtpReceiver({
      binding: tapBinding(env.binding, (data) => this.observe(data)),
      clock: env.clock,
      mediaClock: env.mediaClock,
      logger: env.logger,
      format: o.format,
      payloadType: o.payloadType,
      delayFrames: o.delayFrames,
      paths: [{ bindAddress: o.bind.address, port: o.bind.port, group: o.bind.group }],
      ack: o.ackSsrc !== null ? { ssrc: o.ackSsrc, everyMs: 10 } : null,
      sink: (samples, frames, missing) => {
        if (missing) this.levels.gap();
        else this.levels.feed(samples, frames);
      },
    });
  }

  start(): Promise<void> {
    return this.receiver.start();
  }

  close(): Promise<void> {
    return this.receiver.close();
  }

  /** Time an arriving RTP packet (before the jitter buffer sees it). */
  private observe(data: Buffer): void {
    if (data.length < 12 || data[0]! >> 6 !== 2 || (data[1]! & 0x7f) !== this.o.payloadType) return;
    const arrival = rtpTimestampAt(this.env.mediaClock.nowNs());
    this.transit.add(tsDiff(data.readUInt32BE(4), arrival) / 48);
    this.seq.push(data.readUInt16BE(2));
  }

  /** The figures now; `remoteSender` (the peripheral's sender counters) makes the wire figure. */
  snapshot(remoteSender: RemoteSender | null): RxSnapshot {
    const c = this.receiver.counters();
    const t = this.transit;
    return {
      counters: {
        received: c.received,
        extendedHighestSeq: c.extendedHighestSeq,
        timestampErrors: c.timestampErrors,
        lost: c.lost,
        late: c.late,
        duplicate: c.duplicate,
        reordered: c.reordered,
        playedPackets: c.playedPackets,
        jitter: c.jitter,
        malformed: { ...c.malformed },
        ssrcErrors: c.ssrcErrors,
      },
      transit: {
        samples: t.count,
        meanMs: t.meanMs,
        p50Ms: t.quantileMs(0.5),
        p99Ms: t.quantileMs(0.99),
        minMs: t.count ? t.minMs : null,
        maxMs: t.count ? t.maxMs : null,
      },
      wire: remoteSender
        ? this.seq.wireUpTo(remoteSender.sent + remoteSender.notSent, remoteSender.notSent)
        : null,
      received: this.levels.read(),
      receivedPeakHold: this.levels.peakHoldDb(),
      receivedHz: this.levels.frequencyHz(),
      arrived: this.seq.unique,
    };
  }
}
