/**
 * The media timeline: RTP timestamps derived from PTP time, pure and in integer arithmetic.
 *
 *   RTP timestamp = floor(PTP_ns x 48000 / 1e9) mod 2^32 + mediaclk offset (mod 2^32)
 *
 * A sender anchors its timeline once, at a packet boundary on the PTP sample grid, and from then
 * on packet n carries timestamp ts0 + n x framesPerPacket (mod 2^32) and is due at the PTP time of
 * its first sample. Nothing ever re-anchors a running stream, so timestamps never jump.
 */
export const NS_PER_S = 1_000_000_000n;
export const RATE = 48000n;
const TWO32 = 0x1_0000_0000n;

/** Absolute sample index (samples since the PTP epoch) at `ptpNs`, rounded down. */
export function sampleAt(ptpNs: bigint): bigint {
  return (ptpNs * RATE) / NS_PER_S;
}

/** PTP ns at which absolute sample `sample` starts (rounded up to a whole ns). */
export function sampleTimeNs(sample: bigint): bigint {
  return (sample * NS_PER_S + RATE - 1n) / RATE;
}

/** RTP timestamp for PTP time `ptpNs` with the SDP `mediaclk:direct` offset. */
export function rtpTimestampAt(ptpNs: bigint, offset = 0): number {
  return Number((sampleAt(ptpNs) + BigInt(offset >>> 0)) % TWO32);
}

export interface TimelineAnchor {
  /** Absolute sample index of packet 0 (a multiple of framesPerPacket). */
  firstSample: bigint;
  /** RTP timestamp of packet 0. */
  firstTimestamp: number;
  /** PTP ns at which packet 0 is due. */
  firstDueNs: bigint;
}

export class MediaTimeline {
  readonly anchor: TimelineAnchor;
  /** Nanoseconds per packet, as a float (exact to well under 1 ns for years of packets). */
  readonly packetNs: number;

  /** Anchor at the first packet boundary at or after `startPtpNs`. */
  constructor(
    startPtpNs: bigint,
    readonly framesPerPacket: number,
    readonly offset = 0,
  ) {
    const fpp = BigInt(framesPerPacket);
    let s = sampleAt(startPtpNs);
    if (sampleTimeNs(s) < startPtpNs) s += 1n;
    const first = ((s + fpp - 1n) / fpp) * fpp;
    this.anchor = {
      firstSample: first,
      firstTimestamp: Number((first + BigInt(offset >>> 0)) % TWO32),
      firstDueNs: sampleTimeNs(first),
    };
    this.packetNs = (framesPerPacket * 1e9) / 48000;
  }

  /** RTP timestamp of packet n. */
  timestamp(n: number): number {
    return (this.anchor.firstTimestamp + ((n * this.framesPerPacket) % 0x1_0000_0000)) >>> 0;
  }

  /** PTP ns at which packet n is due (exact, bigint). */
  dueNs(n: number): bigint {
    return sampleTimeNs(this.anchor.firstSample + BigInt(n) * BigInt(this.framesPerPacket));
  }

  /** Due time of packet n relative to packet 0, as a float ns (the worker's allocation-free path). */
  relDueNs(n: number): number {
    return n * this.packetNs;
  }
}

/** Signed distance b - a between two RTP timestamps, in -2^31..2^31-1 (wrap-aware). */
export function tsDiff(a: number, b: number): number {
  return ((b - a) | 0) as number;
}
