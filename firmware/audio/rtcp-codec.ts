/**
 * RTCP (RFC 3550 section 6): sender reports, receiver reports, and the Q-LAN receiver
 * acknowledgement, an APP packet (PT 204, name "QLAK") a Q-LAN receiver sends 100 times per
 * second with its loss, late and jitter counts. Pure codec; compound packets decode to a list.
 */
import { RtpDecodeError, RtpEncodeError } from './rtp-codec.js';

export const RTCP_SR = 200;
export const RTCP_RR = 201;
export const RTCP_APP = 204;
export const QLAN_ACK_NAME = 'QLAK';

export interface ReportBlock {
  ssrc: number;
  /** Fraction lost since the last report, 0..255 (fixed point /256). */
  fractionLost: number;
  /** Cumulative packets lost, signed 24-bit. */
  cumulativeLost: number;
  extendedHighestSeq: number;
  jitter: number;
  lastSr: number;
  delaySinceLastSr: number;
}

export interface SenderReport {
  type: 'sr';
  ssrc: number;
  ntpSeconds: number;
  ntpFraction: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  reports: ReportBlock[];
}

export interface ReceiverReport {
  type: 'rr';
  ssrc: number;
  reports: ReportBlock[];
}

/** Q-LAN receiver acknowledgement (our contract; docs/audio.md). */
export interface QlanAck {
  type: 'qlan-ack';
  /** SSRC of the receiver sending the ack. */
  ssrc: number;
  /** SSRC of the media stream acknowledged. */
  mediaSsrc: number;
  extendedHighestSeq: number;
  received: number;
  lost: number;
  late: number;
  /** Interarrival jitter in RTP timestamp units (RFC 3550 A.8). */
  jitter: number;
}

export type RtcpPacket = SenderReport | ReceiverReport | QlanAck;

function writeBlocks(out: Buffer, off: number, blocks: ReportBlock[]): void {
  for (const b of blocks) {
    out.writeUInt32BE(b.ssrc >>> 0, off);
    out[off + 4] = b.fractionLost & 0xff;
    const cl = Math.max(-0x800000, Math.min(0x7fffff, b.cumulativeLost)) & 0xffffff;
    out[off + 5] = cl >> 16;
    out[off + 6] = (cl >> 8) & 0xff;
    out[off + 7] = cl & 0xff;
    out.writeUInt32BE(b.extendedHighestSeq >>> 0, off + 8);
    out.writeUInt32BE(b.jitter >>> 0, off + 12);
    out.writeUInt32BE(b.lastSr >>> 0, off + 16);
    out.writeUInt32BE(b.delaySinceLastSr >>> 0, off + 20);
    off += 24;
  }
}

function encodeOne(p: RtcpPacket): Buffer {
  if (p.type === 'qlan-ack') {
    const out = Buffer.alloc(36);
    out[0] = 0x80; // V=2, subtype 0
    out[1] = RTCP_APP;
    out.writeUInt16BE(36 / 4 - 1, 2);
    out.writeUInt32BE(p.ssrc >>> 0, 4);
    out.write(QLAN_ACK_NAME, 8, 'ascii');
    out.writeUInt32BE(p.mediaSsrc >>> 0, 12);
    out.writeUInt32BE(p.extendedHighestSeq >>> 0, 16);
    out.writeUInt32BE(p.received >>> 0, 20);
    out.writeUInt32BE(p.lost >>> 0, 24);
    out.writeUInt32BE(p.late >>> 0, 28);
    out.writeUInt32BE(p.jitter >>> 0, 32);
    return out;
  }
  if (p.reports.length > 31) throw new RtpEncodeError(`${p.reports.length} report blocks (max 31)`);
  const head = p.type === 'sr' ? 28 : 8;
  const out = Buffer.alloc(head + 24 * p.reports.length);
  out[0] = 0x80 | p.reports.length;
  out[1] = p.type === 'sr' ? RTCP_SR : RTCP_RR;
  out.writeUInt16BE(out.length / 4 - 1, 2);
  out.writeUInt32BE(p.ssrc >>> 0, 4);
  if (p.type === 'sr') {
    out.writeUInt32BE(p.ntpSeconds >>> 0, 8);
    out.writeUInt32BE(p.ntpFraction >>> 0, 12);
    out.writeUInt32BE(p.rtpTimestamp >>> 0, 16);
    out.writeUInt32BE(p.packetCount >>> 0, 20);
    out.writeUInt32BE(p.octetCount >>> 0, 24);
  }
  writeBlocks(out, head, p.reports);
  return out;
}

/** Encode one or more RTCP packets as one compound datagram. */
export function encodeRtcp(packets: RtcpPacket[]): Buffer {
  return Buffer.concat(packets.map(encodeOne));
}

function readBlocks(dv: DataView, off: number, count: number): ReportBlock[] {
  const out: ReportBlock[] = [];
  for (let i = 0; i < count; i++, off += 24) {
    const raw = (dv.getUint8(off + 5) << 16) | (dv.getUint8(off + 6) << 8) | dv.getUint8(off + 7);
    out.push({
      ssrc: dv.getUint32(off),
      fractionLost: dv.getUint8(off + 4),
      cumulativeLost: raw & 0x800000 ? raw - 0x1000000 : raw,
      extendedHighestSeq: dv.getUint32(off + 8),
      jitter: dv.getUint32(off + 12),
      lastSr: dv.getUint32(off + 16),
      delaySinceLastSr: dv.getUint32(off + 20),
    });
  }
  return out;
}

/**
 * Decode a compound RTCP datagram. Packet types we do not use (SDES, BYE, other APP names) are
 * skipped; malformed lengths throw RtpDecodeError with the offending offset.
 */
export function decodeRtcp(data: Uint8Array): RtcpPacket[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: RtcpPacket[] = [];
  let off = 0;
  if (data.length < 4)
    throw new RtpDecodeError('AUDIO_ERR_SHORT', `RTCP datagram of ${data.length} bytes`, 0);
  while (off < data.length) {
    if (off + 4 > data.length) throw new RtpDecodeError('AUDIO_ERR_SHORT', 'RTCP header truncated', off);
    const b0 = data[off]!;
    if (b0 >> 6 !== 2)
      throw new RtpDecodeError('AUDIO_ERR_VERSION', `RTCP version ${b0 >> 6}, expected 2`, off);
    const count = b0 & 0x1f;
    const pt = data[off + 1]!;
    const len = (dv.getUint16(off + 2) + 1) * 4;
    if (off + len > data.length)
      throw new RtpDecodeError('AUDIO_ERR_RTCP', `RTCP packet of ${len} bytes runs past the end`, off + 2);
    if (pt === RTCP_SR || pt === RTCP_RR) {
      const head = pt === RTCP_SR ? 28 : 8;
      if (head + count * 24 > len)
        throw new RtpDecodeError('AUDIO_ERR_RTCP', `${count} report blocks do not fit in ${len} bytes`, off);
      const ssrc = dv.getUint32(off + 4);
      const reports = readBlocks(dv, off + head, count);
      if (pt === RTCP_SR) {
        out.push({
          type: 'sr',
          ssrc,
          ntpSeconds: dv.getUint32(off + 8),
          ntpFraction: dv.getUint32(off + 12),
          rtpTimestamp: dv.getUint32(off + 16),
          packetCount: dv.getUint32(off + 20),
          octetCount: dv.getUint32(off + 24),
          reports,
        });
      } else out.push({ type: 'rr', ssrc, reports });
    } else if (pt === RTCP_APP && len >= 12) {
      const name = String.fromCharCode(data[off + 8]!, data[off + 9]!, data[off + 10]!, data[off + 11]!);
      if (name === QLAN_ACK_NAME) {
        if (len < 36) throw new RtpDecodeError('AUDIO_ERR_RTCP', `Q-LAN ack of ${len} bytes (needs 36)`, off);
        out.push({
          type: 'qlan-ack',
          ssrc: dv.getUint32(off + 4),
          mediaSsrc: dv.getUint32(off + 12),
          extendedHighestSeq: dv.getUint32(off + 16),
          received: dv.getUint32(off + 20),
          lost: dv.getUint32(off + 24),
          late: dv.getUint32(off + 28),
          jitter: dv.getUint32(off + 32),
        });
      }
    }
    off += len;
  }
  return out;
}
