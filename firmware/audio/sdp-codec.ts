/**
 * SDP (RFC 4566) for AES67 streams, with the RFC 7273 clock attributes (`ts-refclk`,
 * `mediaclk`) and the AES67 ones (`ptime`, `framecount`, `clock-domain`, `sync-time`). Pure:
 * `encodeSdp` writes the text we announce; `decodeSdp` reads ours and other vendors' (GStreamer,
 * PipeWire, Dante, Q-SYS), keeping only what a receiver needs.
 */
import { QperiphError } from '../errors.js';
import { AES67_MAX_CHANNELS, type SampleEncoding } from './rtp-codec.js';

export class SdpError extends QperiphError {
  declare readonly code: 'AUDIO_ERR_SDP';
  /** 1-based line number of the problem, or -1. */
  readonly line: number;
  constructor(reason: string, line = -1) {
    super('AUDIO_ERR_SDP', line >= 0 ? `${reason} (line ${line})` : reason);
    this.line = line;
  }
}

export interface SdpStream {
  sessionId: string;
  sessionVersion: string;
  /** Address of the originator (o= line). */
  origin: string;
  name: string;
  /** Destination (c= line), multicast or unicast IPv4. */
  destination: string;
  ttl: number;
  port: number;
  payloadType: number;
  encoding: Exclude<SampleEncoding, 'F32'>;
  channels: number;
  rate: number;
  /** Packet time in ms (1, 0.333, 0.25, 0.125). */
  ptimeMs: number;
  /** Frames per packet. */
  framesPerPacket: number;
  /** RFC 7273 ts-refclk: PTP grandmaster identity `XX-XX-XX-XX-XX-XX-XX-XX` and domain, or null. */
  ptp: { gmIdentity: string; domain: number } | null;
  /** `mediaclk:direct=N`: RTP timestamp offset against PTP time x 48000. */
  mediaclkOffset: number;
  /** Free-form `i=` (channel labels etc.), may be ''. */
  info: string;
}

const GM_RE = /^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$/;

export function encodeSdp(s: SdpStream): string {
  if (s.channels < 1 || s.channels > AES67_MAX_CHANNELS)
    throw new SdpError(`${s.channels} channels (AES67: 1..8)`);
  if (s.ptp && !GM_RE.test(s.ptp.gmIdentity))
    throw new SdpError(`bad grandmaster identity ${s.ptp.gmIdentity}`);
  for (const [k, v] of [
    ['name', s.name],
    ['info', s.info],
  ] as const)
    if (/[\r\n]/.test(v)) throw new SdpError(`${k} contains a line break`);
  const multicast = isMulticast(s.destination);
  const lines = [
    'v=0',
    `o=- ${s.sessionId} ${s.sessionVersion} IN IP4 ${s.origin}`,
    `s=${s.name}`,
    `c=IN IP4 ${s.destination}${multicast ? `/${s.ttl}` : ''}`,
    't=0 0',
  ];
  if (s.ptp) lines.push(`a=clock-domain:PTPv2 ${s.ptp.domain}`);
  lines.push(`m=audio ${s.port} RTP/AVP ${s.payloadType}`);
  if (s.info) lines.push(`i=${s.info}`);
  lines.push(
    `c=IN IP4 ${s.destination}${multicast ? `/${s.ttl}` : ''}`,
    `a=rtpmap:${s.payloadType} ${s.encoding}/${s.rate}/${s.channels}`,
    'a=recvonly',
    `a=ptime:${formatPtime(s.ptimeMs)}`,
    `a=framecount:${s.framesPerPacket}`,
  );
  if (s.ptp) {
    lines.push(`a=ts-refclk:ptp=IEEE1588-2008:${s.ptp.gmIdentity.toUpperCase()}:${s.ptp.domain}`);
    lines.push(`a=sync-time:0`);
  } else lines.push('a=ts-refclk:local');
  lines.push(`a=mediaclk:direct=${s.mediaclkOffset >>> 0}`);
  return lines.join('\r\n') + '\r\n';
}

function formatPtime(ms: number): string {
  return Number.isInteger(ms) ? String(ms) : ms.toFixed(3).replace(/0+$/, '');
}

function isMulticast(a: string): boolean {
  const f = Number(a.split('.')[0]);
  return f >= 224 && f <= 239;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parse an SDP describing one L24/L16 audio stream (the first audio m= line). */
export function decodeSdp(text: string): SdpStream {
  if (text.length > 16384) throw new SdpError(`SDP of ${text.length} characters (max 16384)`);
  const lines = text.split(/\r?\n/);
  const out: Partial<SdpStream> & { ttl: number; mediaclkOffset: number; info: string } = {
    ttl: 32,
    mediaclkOffset: 0,
    info: '',
  };
  let inAudio = false;
  let seenAudio = false;
  let rtpmapPt = -1;
  let sessionDomain: number | null = null;
  let ptimeMs: number | null = null;
  let framecount: number | null = null;
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trimEnd();
    if (line === '') return;
    if (!/^[a-z]=/.test(line))
      throw new SdpError(`not a type=value line: ${JSON.stringify(line.slice(0, 40))}`, n);
    const type = line[0];
    const value = line.slice(2);
    if (type === 'v' && value !== '0') throw new SdpError(`version ${value}`, n);
    if (type === 'm') {
      if (seenAudio) {
        inAudio = false;
        return;
      }
      const m = /^audio (\d+)(?:\/\d+)? RTP\/AVP (\d+)/.exec(value);
      if (!m) {
        inAudio = false;
        return;
      }
      inAudio = true;
      seenAudio = true;
      out.port = Number(m[1]);
      out.payloadType = Number(m[2]);
      return;
    }
    if (seenAudio && !inAudio) return;
    if (type === 'o') {
      const parts = value.split(' ');
      if (parts.length !== 6) throw new SdpError('o= needs 6 fields', n);
      out.sessionId = parts[1]!;
      out.sessionVersion = parts[2]!;
      out.origin = parts[5]!;
    } else if (type === 's') out.name = value;
    else if (type === 'i' && inAudio) out.info = value;
    else if (type === 'c') {
      const m = /^IN IP4 ([0-9.]+)(?:\/(\d+))?/.exec(value);
      if (!m || !IPV4.test(m[1]!)) throw new SdpError(`unsupported connection ${value}`, n);
      out.destination = m[1]!;
      if (m[2]) out.ttl = Number(m[2]);
    } else if (type === 'a') {
      const colon = value.indexOf(':');
      const name = colon < 0 ? value : value.slice(0, colon);
      const arg = colon < 0 ? '' : value.slice(colon + 1);
      if (name === 'rtpmap' && inAudio) {
        const m = /^(\d+) (L24|L16)\/(\d+)(?:\/(\d+))?$/i.exec(arg);
        if (!m) throw new SdpError(`unsupported rtpmap ${arg}`, n);
        rtpmapPt = Number(m[1]);
        out.encoding = m[2]!.toUpperCase() as 'L24' | 'L16';
        out.rate = Number(m[3]);
        out.channels = m[4] ? Number(m[4]) : 1;
      } else if (name === 'ptime') ptimeMs = Number(arg);
      else if (name === 'framecount') framecount = Number(arg);
      else if (name === 'clock-domain') {
        const m = /^PTPv2 (\d+)$/.exec(arg);
        if (m) sessionDomain = Number(m[1]);
      } else if (name === 'ts-refclk') {
        const m = /^ptp=IEEE1588-20(?:08|19):([0-9A-Fa-f-]{23})(?::(\d+))?/.exec(arg);
        if (m && GM_RE.test(m[1]!))
          out.ptp = { gmIdentity: m[1]!.toUpperCase(), domain: m[2] ? Number(m[2]) : (sessionDomain ?? 0) };
      } else if (name === 'mediaclk') {
        const m = /^direct=(\d+)/.exec(arg);
        if (m) out.mediaclkOffset = Number(m[1]) >>> 0;
      }
    }
  });
  if (!seenAudio) throw new SdpError('no audio RTP/AVP media line');
  if (rtpmapPt < 0 || rtpmapPt !== out.payloadType)
    throw new SdpError('no L24/L16 rtpmap for the media payload type');
  if (!out.destination) throw new SdpError('no connection address');
  if (!out.channels || out.channels < 1 || out.channels > 64) throw new SdpError(`${out.channels} channels`);
  if (out.rate !== 48000) throw new SdpError(`clock rate ${out.rate} (only 48000 is supported)`);
  const fpp = framecount ?? (ptimeMs !== null ? Math.round((ptimeMs * out.rate) / 1000) : 48);
  if (!Number.isFinite(fpp) || fpp < 1 || fpp > 480) throw new SdpError(`packet time of ${fpp} frames`);
  return {
    sessionId: out.sessionId ?? '0',
    sessionVersion: out.sessionVersion ?? '0',
    origin: out.origin ?? '0.0.0.0',
    name: out.name ?? '',
    destination: out.destination,
    ttl: out.ttl,
    port: out.port!,
    payloadType: out.payloadType!,
    encoding: out.encoding!,
    channels: out.channels,
    rate: out.rate,
    ptimeMs: ptimeMs ?? (fpp * 1000) / out.rate,
    framesPerPacket: fpp,
    ptp: out.ptp ?? null,
    mediaclkOffset: out.mediaclkOffset,
    info: out.info,
  };
}
