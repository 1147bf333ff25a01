/**
 * The receive side, pure: RTP datagrams in (with the media time they arrived), whole packets of
 * audio out at a set playout delay. Packets are slotted by RTP timestamp, so order of arrival
 * does not matter; the same core merges two redundant paths (SMPTE ST 2022-7 style: the first
 * copy of each packet wins, the second is counted as merged, not as an error).
 *
 * Playout anchoring, fixed by the first packet: a sender on our media clock (its first timestamp is
 * within half a second of the local media time the packet arrived at) plays at absolute
 * media time: the frames due at local media time T are those stamped T - delay, so end-to-end
 * latency is the playout delay. A sender on another clock (a GStreamer test source with a random
 * timestamp base) is anchored on its first packet's arrival instead: tsOffset = timestamp minus
 * arrival. Never re-anchored while the stream runs; `reset()` (silence, stream re-open) is the
 * only way to anchor again.
 */
import {
  createRtpView,
  payloadBytes,
  readPayloadAt,
  scanRtp,
  type AudioFormat,
  type RtpView,
} from './rtp-codec.js';
import { tsDiff } from './media-timeline.js';

export interface ReceiverCounters {
  received: number;
  /** Packets never received by the time their slot played. */
  lost: number;
  /** Packets that arrived after their slot had played. */
  late: number;
  duplicate: number;
  /** Second copy of a packet from the other redundant path (expected, not an error). */
  merged: number;
  reordered: number;
  ssrcErrors: number;
  payloadTypeErrors: number;
  timestampErrors: number;
  /** Malformed datagrams, by error code. */
  malformed: Record<string, number>;
  playedPackets: number;
  /** RFC 3550 interarrival jitter, in timestamp units. */
  jitter: number;
  extendedHighestSeq: number;
  perPath: [number, number];
}

export interface JitterBufferOptions {
  format: AudioFormat;
  payloadType: number;
  /** Playout delay in frames (e.g. 96 = 2 ms at 48 kHz). */
  delayFrames: number;
  /** Slots in the ring, in packets; must cover the delay plus margin. Default delay/fpp x 4 + 16. */
  capacityPackets?: number;
}

export type PlayoutSink = (
  samples: Float32Array,
  frames: number,
  missing: boolean,
  timestamp: number,
) => void;

export class JitterBuffer {
  readonly counters: ReceiverCounters = {
    received: 0,
    lost: 0,
    late: 0,
    duplicate: 0,
    merged: 0,
    reordered: 0,
    ssrcErrors: 0,
    payloadTypeErrors: 0,
    timestampErrors: 0,
    malformed: {},
    playedPackets: 0,
    jitter: 0,
    extendedHighestSeq: 0,
    perPath: [0, 0],
  };
  private readonly fpp: number;
  private readonly samplesPerPacket: number;
  private readonly capacity: number;
  private readonly data: Float32Array;
  /** Packet index held by each slot, or -1. */
  private readonly slotIndex: Float64Array;
  private readonly slotPath: Uint8Array;
  private readonly silence: Float32Array;
  private readonly view: RtpView = createRtpView();
  private readonly payloadLength: number;
  private ssrc: number | null = null;
  private baseTs = 0;
  private tsOffset = 0;
  /** True when the sender's timestamps follow our media clock (absolute playout). */
  aligned = false;
  /** Next packet index to play. */
  private nextPlay = 0;
  private highestIndex = -1;
  private seqCycles = 0;
  private lastSeq = -1;
  private lastTransit: number | null = null;
  private jitterAcc = 0;

  constructor(private readonly o: JitterBufferOptions) {
    this.fpp = o.format.framesPerPacket;
    this.samplesPerPacket = this.fpp * o.format.channels;
    this.capacity = o.capacityPackets ?? Math.ceil(o.delayFrames / this.fpp) * 4 + 16;
    this.data = new Float32Array(this.capacity * this.samplesPerPacket);
    this.slotIndex = new Float64Array(this.capacity).fill(-1);
    this.slotPath = new Uint8Array(this.capacity);
    this.silence = new Float32Array(this.samplesPerPacket);
    this.payloadLength = payloadBytes(o.format);
  }

  get anchored(): boolean {
    return this.ssrc !== null;
  }

  get currentSsrc(): number | null {
    return this.ssrc;
  }

  /** Forget the stream: the next packet anchors a new timeline. */
  reset(): void {
    this.ssrc = null;
    this.slotIndex.fill(-1);
    this.highestIndex = -1;
    this.lastSeq = -1;
    this.lastTransit = null;
  }

  private malformed(code: string): void {
    this.counters.malformed[code] = (this.counters.malformed[code] ?? 0) + 1;
  }

  /**
   * Offer one datagram that arrived at local media timestamp `arrivalTs` (48 kHz units, mod 2^32).
   * Returns false when it was dropped (and counted). Never throws.
   */
  push(datagram: Uint8Array, arrivalTs: number, path: 0 | 1 = 0): boolean {
    // The checks of decodeRtp + checkPayload, without allocating (this runs 3000 times a second
    // per stream in the receive worker).
    const pkt = this.view;
    const bad = scanRtp(datagram, pkt);
    if (bad !== null) {
      this.malformed(bad);
      return false;
    }
    if (pkt.payloadType !== this.o.payloadType) {
      this.counters.payloadTypeErrors++;
      return false;
    }
    if (pkt.payloadLength !== this.payloadLength) {
      this.malformed('AUDIO_ERR_PAYLOAD_SIZE');
      return false;
    }
    if (this.ssrc === null) {
      this.ssrc = pkt.ssrc;
      this.baseTs = pkt.timestamp;
      const d = tsDiff(arrivalTs, pkt.timestamp);
      // Within half a second (either way a start-up stall, not another clock: a foreign base is
      // a random 32-bit value).
      this.aligned = d >= -24000 && d <= 480;
      this.tsOffset = this.aligned ? 0 : d;
      this.nextPlay = 0;
      this.lastSeq = pkt.sequence;
      this.seqCycles = 0;
    } else if (pkt.ssrc !== this.ssrc) {
      this.counters.ssrcErrors++;
      return false;
    }
    const d = tsDiff(this.baseTs, pkt.timestamp);
    if (d % this.fpp !== 0) {
      this.counters.timestampErrors++;
      return false;
    }
    const index = d / this.fpp;
    if (index >= this.nextPlay + this.capacity) {
      this.counters.timestampErrors++;
      return false;
    }
    this.counters.perPath[path]++;
    if (index < this.nextPlay) {
      // Either a second copy of something already played or a late packet.
      if (index > this.nextPlay - this.capacity && this.slotIndex[this.slot(index)] === index)
        this.countDup(index, path);
      else this.counters.late++;
      return false;
    }
    const slot = this.slot(index);
    if (this.slotIndex[slot] === index) {
      this.countDup(index, path);
      return false;
    }
    this.counters.received++;
    this.trackSeq(pkt.sequence, index);
    // RFC 3550 A.8 jitter.
    const transit = tsDiff(arrivalTs, pkt.timestamp);
    if (this.lastTransit !== null) {
      const dd = Math.abs(transit - this.lastTransit);
      this.jitterAcc += (dd - this.jitterAcc) / 16;
      this.counters.jitter = Math.round(this.jitterAcc);
    }
    this.lastTransit = transit;
    readPayloadAt(
      this.o.format.encoding,
      datagram,
      pkt.payloadOffset,
      this.samplesPerPacket,
      this.data,
      slot * this.samplesPerPacket,
    );
    this.slotIndex[slot] = index;
    this.slotPath[slot] = path;
    return true;
  }

  private countDup(index: number, path: 0 | 1): void {
    if (this.slotPath[this.slot(index)] !== path) this.counters.merged++;
    else this.counters.duplicate++;
  }

  private trackSeq(seq: number, index: number): void {
    if (index < this.highestIndex) this.counters.reordered++;
    else this.highestIndex = index;
    const delta = (seq - this.lastSeq) & 0xffff;
    if (delta < 0x8000) {
      if (seq < this.lastSeq) this.seqCycles += 0x10000;
      this.lastSeq = seq;
    }
    this.counters.extendedHighestSeq = (this.seqCycles + this.lastSeq) >>> 0;
  }

  private slot(index: number): number {
    return ((index % this.capacity) + this.capacity) % this.capacity;
  }

  /**
   * Play every packet whose last frame is due by local media timestamp `nowTs` (minus the playout
   * delay). Missing packets play as silence and count as lost. Returns packets played.
   */
  playout(nowTs: number, sink: PlayoutSink, maxPackets = this.capacity): number {
    if (this.ssrc === null) return 0;
    const dueTs = (nowTs + this.tsOffset - this.o.delayFrames) | 0;
    let played = 0;
    while (played < maxPackets) {
      const startTs = (this.baseTs + this.nextPlay * this.fpp) | 0;
      if (tsDiff(startTs, dueTs) < this.fpp) break;
      const slot = this.slot(this.nextPlay);
      const ts = startTs >>> 0;
      if (this.slotIndex[slot] === this.nextPlay) {
        sink(
          this.data.subarray(slot * this.samplesPerPacket, (slot + 1) * this.samplesPerPacket),
          this.fpp,
          false,
          ts,
        );
      } else {
        this.counters.lost++;
        sink(this.silence, this.fpp, true, ts);
      }
      this.counters.playedPackets++;
      this.nextPlay++;
      played++;
    }
    return played;
  }

  /**
   * Local media timestamp (48 kHz, mod 2^32) at which a frame stamped `streamTs` by the sender
   * plays: the stream's clock offset removed, the playout delay added. Lets a mixer place every
   * stream's frames on one local timeline.
   */
  localTsOf(streamTs: number): number {
    return (streamTs - this.tsOffset + this.o.delayFrames) >>> 0;
  }

  /** Local media timestamp of the next frame this buffer will play, or null before anchoring. */
  nextLocalTs(): number | null {
    if (this.ssrc === null) return null;
    return this.localTsOf((this.baseTs + this.nextPlay * this.fpp) >>> 0);
  }

  /** Packets waiting (received, not yet played). */
  depthPackets(): number {
    return Math.max(0, this.highestIndex - this.nextPlay + 1);
  }
}
