/**
 * The qperiph bundle container: a pure codec for the fixed header, the signed
 * manifest (JSON, signed as bytes) and the signature envelope. No I/O here.
 *
 *   0   8  magic "QPBUNDLE"
 *   8   2  u16 BE format version (1)
 *   10  2  u16 BE flags (0)
 *   12  4  u32 BE manifest length   (1..MAX_MANIFEST)
 *   16  4  u32 BE envelope length   (0..MAX_ENVELOPE; 0 = unsigned)
 *   20  4  u32 BE reserved (0)
 *   24  8  u64 BE payload area length
 *   32     manifest bytes, envelope bytes, payload area
 *
 * Payload offsets in the manifest are relative to the start of the payload area.
 */
import { UpdateError } from './errors.js';

export const BUNDLE_MAGIC = Buffer.from('QPBUNDLE', 'ascii');
export const BUNDLE_FORMAT_VERSION = 1;
export const HEADER_SIZE = 32;
export const MAX_MANIFEST = 1024 * 1024;
export const MAX_ENVELOPE = 64 * 1024;
/** Hard cap on the payload area (4 GiB) whatever the configured limit. */
export const MAX_PAYLOAD_AREA = 4 * 1024 * 1024 * 1024;
export const MIN_CHUNK = 4096;
export const MAX_CHUNK = 8 * 1024 * 1024;
export const DEFAULT_CHUNK = 1024 * 1024;
/** Domain separation: what the signature covers is this prefix followed by the manifest bytes. */
export const SIGNATURE_DOMAIN = Buffer.from('qperiph-bundle-manifest-v1\0', 'ascii');

export interface BundleHeader {
  formatVersion: number;
  manifestLength: number;
  envelopeLength: number;
  payloadLength: number;
}

export type PayloadType = 'app' | 'rootfs' | 'boot' | 'trust';
export const PAYLOAD_TYPES: readonly PayloadType[] = ['app', 'rootfs', 'boot', 'trust'];

export interface PayloadEntry {
  name: string;
  type: PayloadType;
  offset: number;
  size: number;
  /** SHA-256 of the whole payload, hex. */
  sha256: string;
  /** SHA-256 of each chunk of `chunkSize` bytes (the last may be shorter), hex. */
  chunks: string[];
}

export interface Manifest {
  format: 'qperiph-bundle';
  product: string;
  compatible: string[];
  version: string;
  securityVersion: number;
  /** Install order id (nonce) issued by the Core; a device refuses an id it has seen. */
  installOrder: string;
  /** ISO 8601 build time of the bundle (display and audit). */
  buildTime: string;
  chunkSize: number;
  payloads: PayloadEntry[];
}

export interface SignatureEnvelope {
  alg: 'ed25519' | 'es256';
  /** DER certificates, leaf first, base64. */
  chain: string[];
  /** Signature over SIGNATURE_DOMAIN || manifest bytes, base64 (ES256: raw r||s, 64 bytes). */
  signature: string;
}

export function encodeHeader(h: Omit<BundleHeader, 'formatVersion'>): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  BUNDLE_MAGIC.copy(b, 0);
  b.writeUInt16BE(BUNDLE_FORMAT_VERSION, 8);
  b.writeUInt16BE(0, 10);
  b.writeUInt32BE(h.manifestLength, 12);
  b.writeUInt32BE(h.envelopeLength, 16);
  b.writeUInt32BE(0, 20);
  b.writeBigUInt64BE(BigInt(h.payloadLength), 24);
  return b;
}

export function decodeHeader(b: Uint8Array, limits: { maxPayload?: number } = {}): BundleHeader {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < HEADER_SIZE) {
    throw new UpdateError('UPDATE_ERR_TRUNCATED', `header needs ${HEADER_SIZE} bytes, got ${buf.length}`, {
      offset: buf.length,
    });
  }
  if (!buf.subarray(0, 8).equals(BUNDLE_MAGIC))
    throw new UpdateError('UPDATE_ERR_BAD_MAGIC', 'not a qperiph bundle', { offset: 0 });
  const formatVersion = buf.readUInt16BE(8);
  if (formatVersion !== BUNDLE_FORMAT_VERSION) {
    throw new UpdateError('UPDATE_ERR_BAD_VERSION', `bundle format ${formatVersion} is not supported`, {
      offset: 8,
    });
  }
  if (buf.readUInt16BE(10) !== 0 || buf.readUInt32BE(20) !== 0) {
    throw new UpdateError('UPDATE_ERR_BAD_VERSION', 'reserved header fields are not zero', { offset: 10 });
  }
  const manifestLength = buf.readUInt32BE(12);
  const envelopeLength = buf.readUInt32BE(16);
  if (manifestLength === 0 || manifestLength > MAX_MANIFEST) {
    throw new UpdateError(
      'UPDATE_ERR_OVERSIZED',
      `manifest length ${manifestLength} outside 1..${MAX_MANIFEST}`,
      { offset: 12 },
    );
  }
  if (envelopeLength > MAX_ENVELOPE) {
    throw new UpdateError('UPDATE_ERR_OVERSIZED', `envelope length ${envelopeLength} above ${MAX_ENVELOPE}`, {
      offset: 16,
    });
  }
  const big = buf.readBigUInt64BE(24);
  const cap = Math.min(limits.maxPayload ?? MAX_PAYLOAD_AREA, MAX_PAYLOAD_AREA);
  if (big > BigInt(cap))
    throw new UpdateError('UPDATE_ERR_OVERSIZED', `payload area ${big} above the limit ${cap}`, {
      offset: 24,
    });
  return { formatVersion, manifestLength, envelopeLength, payloadLength: Number(big) };
}

/** Byte offset of the payload area in the bundle. */
export function payloadAreaOffset(h: BundleHeader): number {
  return HEADER_SIZE + h.manifestLength + h.envelopeLength;
}

export function totalLength(h: BundleHeader): number {
  return payloadAreaOffset(h) + h.payloadLength;
}

const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function fail(path: string, message: string): never {
  throw new UpdateError('UPDATE_ERR_BAD_MANIFEST', `manifest ${path}: ${message}`);
}

function str(v: unknown, path: string, max = 256): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    fail(path, `must be a string of 1..${max} characters`);
  return v;
}

function uint(v: unknown, path: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max)
    fail(path, `must be an integer 0..${max}`);
  return v;
}

/** Parse and check the manifest bytes (after the signature was verified). Pure. */
export function decodeManifest(bytes: Uint8Array, payloadLength: number): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_BAD_MANIFEST', 'manifest is not valid JSON', {
      offset: HEADER_SIZE,
      cause: err,
    });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('', 'must be an object');
  const m = raw as Record<string, unknown>;
  if (m['format'] !== 'qperiph-bundle') fail('/format', "must be 'qperiph-bundle'");
  const compatible = m['compatible'];
  if (!Array.isArray(compatible) || compatible.length === 0 || compatible.length > 64)
    fail('/compatible', 'must list 1..64 boards');
  const chunkSize = uint(m['chunkSize'], '/chunkSize', MAX_CHUNK);
  if (chunkSize < MIN_CHUNK || chunkSize % MIN_CHUNK !== 0)
    fail('/chunkSize', `must be a multiple of ${MIN_CHUNK}`);
  const payloadsRaw = m['payloads'];
  if (!Array.isArray(payloadsRaw) || payloadsRaw.length === 0 || payloadsRaw.length > 8)
    fail('/payloads', 'must hold 1..8 payloads');
  const payloads: PayloadEntry[] = [];
  let expectedOffset = 0;
  const names = new Set<string>();
  payloadsRaw.forEach((p: unknown, i) => {
    const path = `/payloads/${i}`;
    if (typeof p !== 'object' || p === null) fail(path, 'must be an object');
    const e = p as Record<string, unknown>;
    const name = str(e['name'], `${path}/name`, 64);
    if (!NAME.test(name) || names.has(name)) fail(`${path}/name`, 'must be a unique simple name');
    names.add(name);
    const type = e['type'];
    if (!PAYLOAD_TYPES.includes(type as PayloadType))
      fail(`${path}/type`, `must be one of ${PAYLOAD_TYPES.join('|')}`);
    const offset = uint(e['offset'], `${path}/offset`);
    if (offset !== expectedOffset)
      fail(`${path}/offset`, `must be ${expectedOffset} (payloads are packed in order)`);
    const size = uint(e['size'], `${path}/size`, MAX_PAYLOAD_AREA);
    expectedOffset += size;
    const sha256 = str(e['sha256'], `${path}/sha256`, 64);
    if (!HEX64.test(sha256)) fail(`${path}/sha256`, 'must be 64 lower-case hex digits');
    const chunks = e['chunks'];
    const want = Math.ceil(size / chunkSize);
    if (!Array.isArray(chunks) || chunks.length !== want)
      fail(`${path}/chunks`, `must list ${want} chunk hashes`);
    chunks.forEach((c: unknown, j) => {
      if (typeof c !== 'string' || !HEX64.test(c))
        fail(`${path}/chunks/${j}`, 'must be 64 lower-case hex digits');
    });
    payloads.push({ name, type: type as PayloadType, offset, size, sha256, chunks: chunks as string[] });
  });
  if (expectedOffset !== payloadLength)
    fail('/payloads', `sizes add up to ${expectedOffset}, header says ${payloadLength}`);
  const securityVersion = uint(m['securityVersion'], '/securityVersion');
  return {
    format: 'qperiph-bundle',
    product: str(m['product'], '/product', 64),
    compatible: compatible.map((c: unknown, i) => str(c, `/compatible/${i}`, 64)),
    version: str(m['version'], '/version', 64),
    securityVersion,
    installOrder: (() => {
      const o = str(m['installOrder'], '/installOrder', 128);
      if (o.length < 8) fail('/installOrder', 'must be at least 8 characters');
      return o;
    })(),
    buildTime: (() => {
      const s = str(m['buildTime'], '/buildTime', 40);
      if (Number.isNaN(Date.parse(s))) fail('/buildTime', 'must be an ISO 8601 time');
      return s;
    })(),
    chunkSize,
    payloads,
  };
}

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m), 'utf8');
}

export function decodeEnvelope(bytes: Uint8Array, offset: number): SignatureEnvelope {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'signature envelope is not valid JSON', {
      offset,
      cause: err,
    });
  }
  const e = raw as Record<string, unknown> | null;
  if (typeof e !== 'object' || e === null)
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'envelope must be an object', { offset });
  if (e['alg'] !== 'ed25519' && e['alg'] !== 'es256') {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', "envelope alg must be 'ed25519' or 'es256'", { offset });
  }
  const chain = e['chain'];
  if (
    !Array.isArray(chain) ||
    chain.length === 0 ||
    chain.length > 4 ||
    chain.some((c) => typeof c !== 'string')
  ) {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'envelope chain must hold 1..4 base64 certificates', {
      offset,
    });
  }
  if (typeof e['signature'] !== 'string' || e['signature'].length === 0) {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'envelope signature missing', { offset });
  }
  const env: SignatureEnvelope = { alg: e['alg'], chain: chain as string[], signature: e['signature'] };
  // Canonical form only: no extra fields, no alternative spellings, canonical base64.
  const b64ok = (v: string): boolean => Buffer.from(v, 'base64').toString('base64') === v;
  if (!Buffer.from(bytes).equals(encodeEnvelope(env)) || !env.chain.every(b64ok) || !b64ok(env.signature)) {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'envelope is not in canonical form', { offset });
  }
  return env;
}

export function encodeEnvelope(e: SignatureEnvelope): Buffer {
  return Buffer.from(JSON.stringify(e), 'utf8');
}
