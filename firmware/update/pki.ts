/**
 * A minimal X.509 v3 certificate builder (DER writer) for signing keys and test
 * PKIs, using node:crypto for keys and signatures. Only what the bundle chain
 * needs: a CN subject, validity, basicConstraints, keyUsage and extKeyUsage,
 * Ed25519 or ECDSA P-256 (SHA-256) signatures.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { UpdateError } from './errors.js';

export type KeyAlgorithm = 'ed25519' | 'p256';

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  let v = n;
  while (v > 0) {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [(parts[0] ?? 0) * 40 + (parts[1] ?? 0)];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    let v = Math.floor(p / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  let body = b.subarray(i);
  if ((body[0] ?? 0) & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return tlv(0x02, body);
}

function time(ms: number): Buffer {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const p = (n: number): string => String(n).padStart(2, '0');
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(`${p(y % 100)}${rest}`, 'ascii'));
  return tlv(0x18, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'ascii'));
}

const name = (cn: string): Buffer => seq(set(seq(oid('2.5.4.3'), utf8(cn))));

function sigAlg(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ed25519') return seq(oid('1.3.101.112'));
  if (key.asymmetricKeyType === 'ec') return seq(oid('1.2.840.10045.4.3.2'));
  throw new UpdateError('UPDATE_ERR_KEY', `unsupported key type ${String(key.asymmetricKeyType)}`);
}

export const EKU_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

export interface CertificateSpec {
  subject: string;
  /** Signing key of the issuer (its own key for a self-signed root). */
  issuerKey: KeyObject;
  /** CN of the issuer; defaults to `subject` (self-signed). */
  issuer?: string;
  /** Public key certified. */
  publicKey: KeyObject;
  notBeforeMs: number;
  notAfterMs: number;
  /** true: a CA (keyCertSign); false: an end entity (digitalSignature). */
  ca: boolean;
  /** Extended key usages (OIDs); default: codeSigning for end entities, none for CAs. */
  extKeyUsage?: string[];
  /** Leave out the basicConstraints extension entirely (for negative tests). */
  omitBasicConstraints?: boolean;
}

/** Build and sign a certificate; returns its DER bytes. */
export function createCertificate(spec: CertificateSpec): Buffer {
  const spki = spec.publicKey.export({ format: 'der', type: 'spki' });
  const exts: Buffer[] = [];
  if (!spec.omitBasicConstraints) {
    exts.push(seq(oid('2.5.29.19'), bool(true), octets(spec.ca ? seq(bool(true)) : seq())));
  }
  // keyUsage: bit 0 digitalSignature (0x80), bit 5 keyCertSign (0x04), bit 6 cRLSign (0x02)
  const ku = spec.ca ? Buffer.from([0x01, 0x06]) : Buffer.from([0x07, 0x80]);
  exts.push(seq(oid('2.5.29.15'), bool(true), octets(tlv(0x03, ku))));
  const eku = spec.extKeyUsage ?? (spec.ca ? [] : [EKU_CODE_SIGNING]);
  if (eku.length > 0) exts.push(seq(oid('2.5.29.37'), octets(seq(...eku.map(oid)))));
  const serial = randomBytes(12);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))),
    integer(serial),
    sigAlg(spec.issuerKey),
    name(spec.issuer ?? spec.subject),
    seq(time(spec.notBeforeMs), time(spec.notAfterMs)),
    name(spec.subject),
    Buffer.from(spki),
    tlv(0xa3, seq(...exts)),
  );
  const signature =
    spec.issuerKey.asymmetricKeyType === 'ed25519'
      ? sign(null, tbs, spec.issuerKey)
      : sign('sha256', tbs, spec.issuerKey);
  return seq(tbs, sigAlg(spec.issuerKey), bitString(signature));
}

export function generateSigningKey(alg: KeyAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  return alg === 'ed25519'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

export function derToPem(der: Buffer): string {
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** All certificates in a PEM text, as DER. */
export function pemToDers(pem: string): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
  for (let m = re.exec(pem); m; m = re.exec(pem))
    out.push(Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
  return out;
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function loadPrivateKey(pem: string | Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_KEY', 'cannot parse the private key', { cause: err });
  }
}

export interface TestPki {
  root: { key: KeyObject; der: Buffer; cert: X509Certificate };
  signer: { key: KeyObject; der: Buffer; cert: X509Certificate };
}

/** A root CA and a code-signing leaf under it (keygen and tests). */
export function createPki(
  opts: { alg?: KeyAlgorithm; rootName?: string; signerName?: string; nowMs?: number; days?: number } = {},
): TestPki {
  const alg = opts.alg ?? 'ed25519';
  const now = opts.nowMs ?? Date.now();
  const days = opts.days ?? 3650;
  const rootKeys = generateSigningKey(alg);
  const signerKeys = generateSigningKey(alg);
  const rootName = opts.rootName ?? 'qperiph update root';
  const rootDer = createCertificate({
    subject: rootName,
    issuerKey: rootKeys.privateKey,
    publicKey: rootKeys.publicKey,
    notBeforeMs: now - 86_400_000,
    notAfterMs: now + days * 86_400_000,
    ca: true,
  });
  const signerDer = createCertificate({
    subject: opts.signerName ?? 'qperiph bundle signer',
    issuer: rootName,
    issuerKey: rootKeys.privateKey,
    publicKey: signerKeys.publicKey,
    notBeforeMs: now - 86_400_000,
    notAfterMs: now + days * 86_400_000,
    ca: false,
  });
  return {
    root: { key: rootKeys.privateKey, der: rootDer, cert: new X509Certificate(rootDer) },
    signer: { key: signerKeys.privateKey, der: signerDer, cert: new X509Certificate(signerDer) },
  };
}

export { createPublicKey };
