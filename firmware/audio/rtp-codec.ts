/**
 * RTP (RFC 3550) packets and the two audio payload formats the peripheral speaks. Pure: bytes in,
 * typed values out, `RtpDecodeError` (code + byte offset) on anything malformed.
 *
 * - Q-LAN profile (our contract, see docs/audio.md): 48 kHz, 16 frames per packet, 1..16
 *   channels, IEEE-754 float32 big-endian, interleaved (frame 0 ch 0, frame 0 ch 1, ...).
 * - AES67: L24 or L16 (RFC 3190 / RFC 3551), big-endian signed, interleaved, 48 kHz, 6/12/16/48
 *   frames per packet, 1..8 channels.
 *
 * The fast paths (`writeRtpHeader`, `writeFloat32Payload`, `writeL24Payload`, `readPayload`) work
 * in place on caller-owned buffers so senders and receivers never allocate per packet.
 */
import { QperiphError } from '../errors.js';

export const RTP_VERSION = 2;
export const RTP_HEADER_BYTES = 12;
export const MEDIA_RATE = 48000;

export type RtpDecodeErrorCode =
  | 'AUDIO_ERR_SHORT'
  | 'AUDIO_ERR_VERSION'
  | 'AUDIO_ERR_CSRC'
  | 'AUDIO_ERR_EXTENSION'
  | 'AUDIO_ERR_PADDING'
  | 'AUDIO_ERR_PAYLOAD_SIZE'
  | 'AUDIO_ERR_PAYLOAD_TYPE'
  | 'AUDIO_ERR_RTCP';

export class RtpDecodeError extends QperiphError {
  declare readonly code: RtpDecodeErrorCode;
  readonly offset: number;
  readonly reason: string;
  constructor(code: RtpDecodeErrorCode, reason: string, offset = -1) {
    super(code, offset >= 0 ? `${reason} (at byte ${offset})` : reason);
    this.offset = offset;
    this.reason = reason;
  }
}

export class RtpEncodeError extends QperiphError {
  declare readonly code: 'AUDIO_ERR_ENCODE';
  constructor(reason: string) {
    super('AUDIO_ERR_ENCODE', reason);
  }
}

export interface RtpHeaderExtension {
  /** The 16-bit "defined by profile" field. */
  profile: number;
  /** Extension body; length must be a multiple of 4. */
  data: Uint8Array;
}

export interface RtpPacket {
  padding: boolean;
  marker: boolean;
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  csrc: number[];
  extension: RtpHeaderExtension | null;
  /** Payload without padding. On decode this is a view into the datagram. */
  payload: Uint8Array;
  /** Padding bytes to add on encode (the last one holds the count); 0 = none. */
  paddingBytes?: number;
}

function u32(n: number): number {
  return n >>> 0;
}

/** Decode one RTP datagram. Never reads outside `data`; throws RtpDecodeError. */
export function decodeRtp(data: Uint8Array): RtpPacket {
  if (data.length < RTP_HEADER_BYTES)
    throw new RtpDecodeError(
      'AUDIO_ERR_SHORT',
      `datagram of ${data.length} bytes is shorter than an RTP header`,
      0,
    );
  const b0 = data[0]!;
  const b1 = data[1]!;
  const version = b0 >> 6;
  if (version !== RTP_VERSION)
    throw new RtpDecodeError('AUDIO_ERR_VERSION', `RTP version ${version}, expected 2`, 0);
  const padding = (b0 & 0x20) !== 0;
  const hasExt = (b0 & 0x10) !== 0;
  const cc = b0 & 0x0f;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let off = RTP_HEADER_BYTES;
  if (off + cc * 4 > data.length)
    throw new RtpDecodeError(
      'AUDIO_ERR_CSRC',
      `CSRC count ${cc} runs past the end of a ${data.length}-byte datagram`,
      0,
    );
  const csrc: number[] = [];
  for (let i = 0; i < cc; i++, off += 4) csrc.push(dv.getUint32(off));
  let extension: RtpHeaderExtension | null = null;
  if (hasExt) {
    if (off + 4 > data.length)
      throw new RtpDecodeError('AUDIO_ERR_EXTENSION', 'extension header truncated', off);
    const profile = dv.getUint16(off);
    const words = dv.getUint16(off + 2);
    if (off + 4 + words * 4 > data.length)
      throw new RtpDecodeError(
        'AUDIO_ERR_EXTENSION',
        `extension of ${words} words runs past the end`,
        off + 2,
      );
    extension = { profile, data: data.subarray(off + 4, off + 4 + words * 4) };
    off += 4 + words * 4;
  }
  let end = data.length;
  let paddingBytes = 0;
  if (padding) {
    paddingBytes = data[data.length - 1]!;
    if (paddingBytes === 0 || end - paddingBytes < off)
      throw new RtpDecodeError(
        'AUDIO_ERR_PADDING',
        `padding count ${paddingBytes} is invalid`,
        data.length - 1,
      );
    end -= paddingBytes;
  }
  return {
    padding,
    marker: (b1 & 0x80) !== 0,
    payloadType: b1 & 0x7f,
    sequence: dv.getUint16(2),
    timestamp: dv.getUint32(4),
    ssrc: dv.getUint32(8),
    csrc,
    extension,
    payload: data.subarray(off, end),
    paddingBytes,
  };
}

export function rtpEncodingLength(p: RtpPacket): number {
  const ext = p.extension ? 4 + p.extension.data.length : 0;
  return (
    RTP_HEADER_BYTES + p.csrc.length * 4 + ext + p.payload.length + (p.padding ? (p.paddingBytes ?? 0) : 0)
  );
}

/** Encode an RTP packet into a new Buffer. Throws RtpEncodeError on values that cannot be encoded. */
export function encodeRtp(p: RtpPacket): Buffer {
  if (p.csrc.length > 15) throw new RtpEncodeError(`${p.csrc.length} CSRCs (max 15)`);
  if (!Number.isInteger(p.payloadType) || p.payloadType < 0 || p.payloadType > 127)
    throw new RtpEncodeError(`payload type ${p.payloadType} out of 0..127`);
  if (p.extension && p.extension.data.length % 4 !== 0)
    throw new RtpEncodeError('extension data length must be a multiple of 4');
  const pad = p.padding ? (p.paddingBytes ?? 0) : 0;
  if (p.padding && (pad < 1 || pad > 255)) throw new RtpEncodeError(`padding of ${pad} bytes (1..255)`);
  const out = Buffer.alloc(rtpEncodingLength(p));
  out[0] = (RTP_VERSION << 6) | (p.padding ? 0x20 : 0) | (p.extension ? 0x10 : 0) | p.csrc.length;
  out[1] = (p.marker ? 0x80 : 0) | p.payloadType;
  out.writeUInt16BE(p.sequence & 0xffff, 2);
  out.writeUInt32BE(u32(p.timestamp), 4);
  out.writeUInt32BE(u32(p.ssrc), 8);
  let off = RTP_HEADER_BYTES;
  for (const c of p.csrc) {
    out.writeUInt32BE(u32(c), off);
    off += 4;
  }
  if (p.extension) {
    out.writeUInt16BE(p.extension.profile & 0xffff, off);
    out.writeUInt16BE(p.extension.data.length / 4, off + 2);
    out.set(p.extension.data, off + 4);
    off += 4 + p.extension.data.length;
  }
  out.set(p.payload, off);
  if (pad > 0) out[out.length - 1] = pad;
  return out;
}

/** Write a plain 12-byte header (no CSRC, no extension, no padding) in place. */
export function writeRtpHeader(
  buf: Uint8Array,
  payloadType: number,
  marker: boolean,
  sequence: number,
  timestamp: number,
  ssrc: number,
): void {
  buf[0] = 0x80;
  buf[1] = (marker ? 0x80 : 0) | (payloadType & 0x7f);
  buf[2] = (sequence >> 8) & 0xff;
  buf[3] = sequence & 0xff;
  const ts = timestamp >>> 0;
  buf[4] = ts >>> 24;
  buf[5] = (ts >>> 16) & 0xff;
  buf[6] = (ts >>> 8) & 0xff;
  buf[7] = ts & 0xff;
  const s = ssrc >>> 0;
  buf[8] = s >>> 24;
  buf[9] = (s >>> 16) & 0xff;
  buf[10] = (s >>> 8) & 0xff;
  buf[11] = s & 0xff;
}

// ---------------------------------------------------------------------------------------------
// Payload formats

export type SampleEncoding = 'F32' | 'L24' | 'L16';

export interface AudioFormat {
  encoding: SampleEncoding;
  channels: number;
  /** Frames (samples per channel) per packet. */
  framesPerPacket: number;
}

export const BYTES_PER_SAMPLE: Record<SampleEncoding, number> = { F32: 4, L24: 3, L16: 2 };

export const QLAN_FRAMES_PER_PACKET = 16;
export const QLAN_MAX_CHANNELS = 16;
export const QLAN_PAYLOAD_TYPE = 98;
export const AES67_MAX_CHANNELS = 8;
export const AES67_FRAME_CHOICES = [6, 12, 16, 48] as const;

export function qlanFormat(channels: number): AudioFormat {
  return { encoding: 'F32', channels, framesPerPacket: QLAN_FRAMES_PER_PACKET };
}

export function payloadBytes(f: AudioFormat): number {
  return f.framesPerPacket * f.channels * BYTES_PER_SAMPLE[f.encoding];
}

/** Throws RtpEncodeError when the format is outside what the profile allows. */
export function checkFormat(f: AudioFormat): void {
  if (f.encoding === 'F32') {
    if (!Number.isInteger(f.channels) || f.channels < 1 || f.channels > QLAN_MAX_CHANNELS)
      throw new RtpEncodeError(`Q-LAN streams carry 1..16 channels, not ${f.channels}`);
    if (f.framesPerPacket !== QLAN_FRAMES_PER_PACKET)
      throw new RtpEncodeError(`Q-LAN packets carry 16 frames, not ${f.framesPerPacket}`);
  } else {
    if (!Number.isInteger(f.channels) || f.channels < 1 || f.channels > AES67_MAX_CHANNELS)
      throw new RtpEncodeError(`AES67 streams carry 1..8 channels, not ${f.channels}`);
    if (!(AES67_FRAME_CHOICES as readonly number[]).includes(f.framesPerPacket))
      throw new RtpEncodeError(`AES67 packet time of ${f.framesPerPacket} frames is not 6/12/16/48`);
  }
}

function clamp1(x: number): number {
  return x > 1 ? 1 : x < -1 ? -1 : x !== x ? 0 : x;
}

/**
 * Write `frames*channels` interleaved float samples from `src` (starting at `srcOffset`) into
 * `dst` at `dstOffset` in the given encoding. Integers are scaled by 2^23 / 2^15 and clipped.
 */
export function writePayload(
  enc: SampleEncoding,
  src: Float32Array,
  srcOffset: number,
  count: number,
  dst: Uint8Array,
  dstOffset: number,
): void {
  let o = dstOffset;
  if (enc === 'F32') {
    const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    for (let i = 0; i < count; i++, o += 4) dv.setFloat32(o, src[srcOffset + i]!, false);
  } else if (enc === 'L24') {
    for (let i = 0; i < count; i++, o += 3) {
      let v = Math.round(clamp1(src[srcOffset + i]!) * 8388608);
      if (v > 8388607) v = 8388607;
      dst[o] = (v >> 16) & 0xff;
      dst[o + 1] = (v >> 8) & 0xff;
      dst[o + 2] = v & 0xff;
    }
  } else {
    for (let i = 0; i < count; i++, o += 2) {
      let v = Math.round(clamp1(src[srcOffset + i]!) * 32768);
      if (v > 32767) v = 32767;
      dst[o] = (v >> 8) & 0xff;
      dst[o + 1] = v & 0xff;
    }
  }
}

/** Read `count` interleaved samples of `enc` from `src` into `dst` (floats in -1..1). */
export function readPayload(
  enc: SampleEncoding,
  src: Uint8Array,
  count: number,
  dst: Float32Array,
  dstOffset: number,
): void {
  readPayloadAt(enc, src, 0, count, dst, dstOffset);
}

// One float32 of scratch: big-endian bytes in, the value out, without a DataView per packet.
const F32_SCRATCH = new Float32Array(1);
const F32_BYTES = new Uint8Array(F32_SCRATCH.buffer);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * `readPayload` from byte `srcOffset` of `src` (a whole datagram): the receive fast path, which
 * allocates nothing.
 */
export function readPayloadAt(
  enc: SampleEncoding,
  src: Uint8Array,
  srcOffset: number,
  count: number,
  dst: Float32Array,
  dstOffset: number,
): void {
  if (enc === 'F32') {
    const b = F32_BYTES;
    for (let i = 0, o = srcOffset; i < count; i++, o += 4) {
      if (HOST_LE) {
        b[0] = src[o + 3]!;
        b[1] = src[o + 2]!;
        b[2] = src[o + 1]!;
        b[3] = src[o]!;
      } else {
        b[0] = src[o]!;
        b[1] = src[o + 1]!;
        b[2] = src[o + 2]!;
        b[3] = src[o + 3]!;
      }
      dst[dstOffset + i] = F32_SCRATCH[0]!;
    }
  } else if (enc === 'L24') {
    for (let i = 0, o = srcOffset; i < count; i++, o += 3) {
      const v = (src[o]! << 24) | (src[o + 1]! << 16) | (src[o + 2]! << 8);
      dst[dstOffset + i] = (v >> 8) / 8388608;
    }
  } else {
    for (let i = 0, o = srcOffset; i < count; i++, o += 2) {
      const v = (src[o]! << 24) | (src[o + 1]! << 16);
      dst[dstOffset + i] = (v >> 16) / 32768;
    }
  }
}

/** The header fields a receiver needs, filled in place by `scanRtp`. */
export interface RtpView {
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  /** Payload (padding removed) as a byte range of the datagram. */
  payloadOffset: number;
  payloadLength: number;
}

export function createRtpView(): RtpView {
  return { payloadType: 0, sequence: 0, timestamp: 0, ssrc: 0, payloadOffset: 0, payloadLength: 0 };
}

/**
 * The receive fast path of `decodeRtp`: the same checks in the same order, but it fills `out`
 * and returns the error code `decodeRtp` would throw (null when well formed), so a receiver
 * allocates nothing per datagram, good or bad.
 */
export function scanRtp(data: Uint8Array, out: RtpView): RtpDecodeErrorCode | null {
  const len = data.length;
  if (len < RTP_HEADER_BYTES) return 'AUDIO_ERR_SHORT';
  const b0 = data[0]!;
  if (b0 >> 6 !== RTP_VERSION) return 'AUDIO_ERR_VERSION';
  let off = RTP_HEADER_BYTES + (b0 & 0x0f) * 4;
  if (off > len) return 'AUDIO_ERR_CSRC';
  if ((b0 & 0x10) !== 0) {
    if (off + 4 > len) return 'AUDIO_ERR_EXTENSION';
    const words = (data[off + 2]! << 8) | data[off + 3]!;
    if (off + 4 + words * 4 > len) return 'AUDIO_ERR_EXTENSION';
    off += 4 + words * 4;
  }
  let end = len;
  if ((b0 & 0x20) !== 0) {
    const pad = data[len - 1]!;
    if (pad === 0 || end - pad < off) return 'AUDIO_ERR_PADDING';
    end -= pad;
  }
  out.payloadType = data[1]! & 0x7f;
  out.sequence = (data[2]! << 8) | data[3]!;
  out.timestamp = ((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0;
  out.ssrc = ((data[8]! << 24) | (data[9]! << 16) | (data[10]! << 8) | data[11]!) >>> 0;
  out.payloadOffset = off;
  out.payloadLength = end - off;
  return null;
}

/** Check an RTP packet's payload against a stream format; throws RtpDecodeError. */
export function checkPayload(p: RtpPacket, f: AudioFormat, payloadType: number): void {
  if (p.payloadType !== payloadType)
    throw new RtpDecodeError(
      'AUDIO_ERR_PAYLOAD_TYPE',
      `payload type ${p.payloadType}, stream uses ${payloadType}`,
      1,
    );
  const want = payloadBytes(f);
  if (p.payload.length !== want)
    throw new RtpDecodeError(
      'AUDIO_ERR_PAYLOAD_SIZE',
      `payload of ${p.payload.length} bytes, format needs ${want} (${f.framesPerPacket} frames x ${f.channels} ch ${f.encoding})`,
      RTP_HEADER_BYTES + p.csrc.length * 4 + (p.extension ? 4 + p.extension.data.length : 0),
    );
}
