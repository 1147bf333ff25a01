/**
 * Checks on a certificate someone wants to install as the device certificate. Pure apart from
 * node:crypto's parser: PEM text + the device's private key + "now" in, parsed chain or a typed
 * error out. Nothing here touches files.
 *
 * node:crypto has no path validation, so each link of the pasted chain is checked by hand:
 * the issuer name matches, the signature verifies with the next certificate's key, and that
 * certificate is a CA.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import { QperiphError } from '../errors.js';

export type PkiErrorCode =
  | 'PKI_ERR_TOO_LARGE'
  | 'PKI_ERR_BAD_PEM'
  | 'PKI_ERR_KEY_MISMATCH'
  | 'PKI_ERR_EXPIRED'
  | 'PKI_ERR_NOT_YET_VALID'
  | 'PKI_ERR_CHAIN'
  | 'PKI_ERR_BAD_SUBJECT'
  | 'PKI_ERR_KEY_PERMISSIONS'
  | 'PKI_ERR_IO';

export class PkiError extends QperiphError {
  declare readonly code: PkiErrorCode;
  /** Index of the certificate in the pasted chain the problem is about, or -1. */
  readonly index: number;
  constructor(code: PkiErrorCode, message: string, index = -1, options?: { cause?: unknown }) {
    super(code, message, options);
    this.index = index;
  }
}

/** A pasted certificate chain is refused above this size. */
export const MAX_CHAIN_PEM_BYTES = 64 * 1024;
/** At most this many certificates (leaf + intermediates [+ root]). */
export const MAX_CHAIN_LENGTH = 8;

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

/** The certificates in PEM text, in order. Any other block type or stray base64 is an error. */
export function parseCertificatePem(text: string): X509Certificate[] {
  if (Buffer.byteLength(text, 'utf8') > MAX_CHAIN_PEM_BYTES) {
    throw new PkiError('PKI_ERR_TOO_LARGE', `certificate text is larger than ${MAX_CHAIN_PEM_BYTES} bytes`);
  }
  const certs: X509Certificate[] = [];
  let rest = text;
  for (const m of text.matchAll(BLOCK_RE)) {
    rest = rest.replace(m[0], '');
    if (m[1] !== 'CERTIFICATE') {
      throw new PkiError(
        'PKI_ERR_BAD_PEM',
        `PEM block ${certs.length} is a ${m[1]}; only CERTIFICATE blocks are accepted (never paste a private key)`,
        certs.length,
      );
    }
    if (certs.length >= MAX_CHAIN_LENGTH) {
      throw new PkiError('PKI_ERR_TOO_LARGE', `more than ${MAX_CHAIN_LENGTH} certificates`, certs.length);
    }
    try {
      certs.push(new X509Certificate(m[0]));
    } catch (err) {
      throw new PkiError('PKI_ERR_BAD_PEM', `certificate ${certs.length} cannot be parsed`, certs.length, {
        cause: err,
      });
    }
  }
  if (certs.length === 0) throw new PkiError('PKI_ERR_BAD_PEM', 'no PEM CERTIFICATE block found');
  if (rest.trim() !== '') throw new PkiError('PKI_ERR_BAD_PEM', 'text outside the PEM blocks');
  return certs;
}

function checkTime(cert: X509Certificate, nowMs: number, index: number): void {
  if (Date.parse(cert.validTo) < nowMs) {
    throw new PkiError('PKI_ERR_EXPIRED', `certificate ${index} expired on ${cert.validTo}`, index);
  }
  if (Date.parse(cert.validFrom) > nowMs) {
    throw new PkiError(
      'PKI_ERR_NOT_YET_VALID',
      `certificate ${index} is not valid before ${cert.validFrom}`,
      index,
    );
  }
}

/**
 * Check a chain for installation: certificate 0 is for `privateKey`, every certificate is
 * within its validity at `nowMs`, and each one is issued and signed by the next, which is a CA.
 */
export function checkInstallableChain(pem: string, privateKey: KeyObject, nowMs: number): X509Certificate[] {
  const certs = parseCertificatePem(pem);
  const leaf = certs[0]!;
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new PkiError('PKI_ERR_KEY_MISMATCH', "certificate 0 is not for this device's private key", 0);
  }
  certs.forEach((c, i) => checkTime(c, nowMs, i));
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i]!;
    const parent = certs[i + 1]!;
    if (!child.checkIssued(parent)) {
      throw new PkiError('PKI_ERR_CHAIN', `certificate ${i} was not issued by certificate ${i + 1}`, i);
    }
    if (!parent.ca) throw new PkiError('PKI_ERR_CHAIN', `certificate ${i + 1} is not a CA`, i + 1);
    if (!child.verify(parent.publicKey)) {
      throw new PkiError(
        'PKI_ERR_CHAIN',
        `certificate ${i} signature does not verify with certificate ${i + 1}`,
        i,
      );
    }
  }
  return certs;
}

export interface CertSummary {
  subject: string;
  issuer: string;
  serialNumber: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
  fingerprint1: string;
  subjectAltName: string | null;
  ca: boolean;
}

export function summarise(cert: X509Certificate): CertSummary {
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    serialNumber: cert.serialNumber,
    validFrom: new Date(cert.validFrom).toISOString(),
    validTo: new Date(cert.validTo).toISOString(),
    fingerprint256: cert.fingerprint256,
    fingerprint1: cert.fingerprint,
    subjectAltName: cert.subjectAltName ?? null,
    ca: cert.ca,
  };
}
