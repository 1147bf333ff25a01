/**
 * SAP (RFC 2974) announcement packets carrying SDP. Pure codec. IPv4 origins only, no
 * authentication and no compression (we refuse encrypted/compressed packets: AES67 peers
 * do not send them).
 */
import { QperiphError } from '../errors.js';

export const SAP_GROUP = '239.255.255.255';
export const SAP_PORT = 9875;
export const SAP_MIME = 'application/sdp';

export type SapErrorCode = 'AUDIO_ERR_SAP_SHORT' | 'AUDIO_ERR_SAP_VERSION' | 'AUDIO_ERR_SAP_UNSUPPORTED';

export class SapDecodeError extends QperiphError {
  declare readonly code: SapErrorCode;
  readonly offset: number;
  constructor(code: SapErrorCode, reason: string, offset: number) {
    super(code, `${reason} (at byte ${offset})`);
    this.offset = offset;
  }
}

export interface SapPacket {
  /** true = deletion (the session ended). */
  deletion: boolean;
  /** 16-bit message id hash; changes whenever the SDP changes. */
  msgIdHash: number;
  /** Originating source, IPv4 dotted. */
  origin: string;
  payloadType: string;
  sdp: string;
}

export function encodeSap(p: SapPacket): Buffer {
  const parts = p.origin.split('.').map(Number);
  if (parts.length !== 4 || parts.some((x) => !Number.isInteger(x) || x < 0 || x > 255))
    throw new QperiphError('AUDIO_ERR_ENCODE', `SAP origin ${p.origin} is not IPv4`);
  const head = Buffer.alloc(8);
  head[0] = 0x20 | (p.deletion ? 0x04 : 0); // V=1, A=0 (IPv4), R=0, T, E=0, C=0
  head[1] = 0; // no authentication
  head.writeUInt16BE(p.msgIdHash & 0xffff, 2);
  head.set(parts, 4);
  return Buffer.concat([head, Buffer.from(`${p.payloadType}\0`, 'ascii'), Buffer.from(p.sdp, 'utf8')]);
}

export function decodeSap(data: Uint8Array): SapPacket {
  if (data.length < 8)
    throw new SapDecodeError('AUDIO_ERR_SAP_SHORT', `SAP datagram of ${data.length} bytes`, 0);
  const b0 = data[0]!;
  const version = b0 >> 5;
  if (version !== 1) throw new SapDecodeError('AUDIO_ERR_SAP_VERSION', `SAP version ${version}`, 0);
  if (b0 & 0x10) throw new SapDecodeError('AUDIO_ERR_SAP_UNSUPPORTED', 'IPv6 origin', 0);
  if (b0 & 0x03) throw new SapDecodeError('AUDIO_ERR_SAP_UNSUPPORTED', 'encrypted or compressed', 0);
  const authWords = data[1]!;
  let off = 8 + authWords * 4;
  if (off > data.length) throw new SapDecodeError('AUDIO_ERR_SAP_SHORT', 'authentication data truncated', 1);
  const origin = `${data[4]}.${data[5]}.${data[6]}.${data[7]}`;
  const rest = Buffer.from(data.buffer, data.byteOffset + off, data.length - off);
  let payloadType = SAP_MIME;
  // A payload type is present unless the payload starts directly with "v=0".
  if (!(rest[0] === 0x76 && rest[1] === 0x3d)) {
    const nul = rest.indexOf(0);
    if (nul < 0 || nul > 128)
      throw new SapDecodeError('AUDIO_ERR_SAP_SHORT', 'payload type not terminated', off);
    payloadType = rest.subarray(0, nul).toString('ascii');
    off += nul + 1;
  }
  return {
    deletion: (b0 & 0x04) !== 0,
    msgIdHash: (data[2]! << 8) | data[3]!,
    origin,
    payloadType,
    sdp: Buffer.from(data.buffer, data.byteOffset + off, data.length - off).toString('utf8'),
  };
}

/** A stable 16-bit hash of an SDP text, used as the SAP message id hash. */
export function sapHash(sdp: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sdp.length; i++) h = Math.imul(h ^ sdp.charCodeAt(i), 0x01000193);
  return ((h >>> 16) ^ h) & 0xffff || 1;
}
