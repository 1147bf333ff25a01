/**
 * Trust store and certificate-chain verification with node:crypto only.
 * node:crypto has no path validation, so every link is checked by hand:
 * issued-by AND signature AND CA flag AND validity against a time floor.
 */
import { X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import { UpdateError } from './errors.js';
import { EKU_CODE_SIGNING, pemToDers } from './pki.js';

export type TrustChannel = 'release' | 'dev';

/** The time used for certificate validity: survives an unset clock (1970) after a power cut. */
export function timeFloor(nowMs: number, lastGoodMs: number, buildTimeMs: number): number {
  return Math.max(nowMs, lastGoodMs, buildTimeMs);
}

/** Tolerated clock skew for "not yet valid" (a signer's clock a little ahead of ours). */
export const NOT_BEFORE_SKEW_MS = 24 * 3600 * 1000;

export class TrustStore {
  readonly channel: TrustChannel;
  private readonly anchorList: X509Certificate[];
  private readonly pinned: Set<string>;

  constructor(opts: { channel: TrustChannel; anchors: X509Certificate[]; pinnedCores?: string[] }) {
    this.channel = opts.channel;
    this.anchorList = opts.anchors.filter((a) => a.ca);
    this.pinned = new Set((opts.pinnedCores ?? []).map((f) => f.toUpperCase()));
  }

  get anchors(): readonly X509Certificate[] {
    return this.anchorList;
  }

  isPinnedCore(cert: X509Certificate): boolean {
    return this.pinned.has(cert.fingerprint256.toUpperCase());
  }

  withPinnedCores(fingerprints: string[]): TrustStore {
    return new TrustStore({ channel: this.channel, anchors: this.anchorList, pinnedCores: fingerprints });
  }
}

function checkValidity(cert: X509Certificate, floorMs: number, what: string): void {
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (Number.isNaN(notBefore) || Number.isNaN(notAfter))
    throw new UpdateError('UPDATE_ERR_CHAIN', `${what}: unreadable validity`);
  if (notAfter < floorMs) {
    throw new UpdateError(
      'UPDATE_ERR_CERT_EXPIRED',
      `${what} '${cert.subject.replace(/\n/g, ',')}' expired ${cert.validTo}`,
    );
  }
  if (notBefore > floorMs + NOT_BEFORE_SKEW_MS) {
    throw new UpdateError('UPDATE_ERR_CERT_NOT_YET_VALID', `${what} is not valid before ${cert.validFrom}`);
  }
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Verify the signer chain (leaf first) against the store at `floorMs`.
 * Returns the leaf. The leaf must be an end entity with codeSigning usage.
 */
export function verifyChain(chainDer: Buffer[], store: TrustStore, floorMs: number): X509Certificate {
  let certs: X509Certificate[];
  try {
    certs = chainDer.map((d) => new X509Certificate(d));
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_BAD_ENVELOPE', 'a certificate in the envelope cannot be parsed', {
      cause: err,
    });
  }
  const leaf = certs[0];
  if (!leaf) throw new UpdateError('UPDATE_ERR_UNSIGNED', 'no signer certificate');
  if (leaf.ca)
    throw new UpdateError('UPDATE_ERR_CERT_USAGE', 'the signer certificate is a CA, not an end entity');
  const eku = leaf.keyUsage ?? [];
  if (!eku.includes(EKU_CODE_SIGNING))
    throw new UpdateError('UPDATE_ERR_CERT_USAGE', 'the signer certificate lacks codeSigning usage');
  checkValidity(leaf, floorMs, 'signer certificate');
  // A pinned Core signs directly with its own (pinned) certificate.
  if (certs.length === 1 && store.isPinnedCore(leaf)) return leaf;
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i] as X509Certificate;
    const parent = certs[i + 1] as X509Certificate;
    if (!issuedBy(child, parent))
      throw new UpdateError('UPDATE_ERR_CHAIN', `chain link ${i} is not issued by link ${i + 1}`);
    if (!parent.ca) throw new UpdateError('UPDATE_ERR_CHAIN', `chain link ${i + 1} is not a CA`);
    checkValidity(parent, floorMs, `intermediate ${i + 1}`);
    if (store.isPinnedCore(parent)) return leaf;
  }
  const top = certs[certs.length - 1] as X509Certificate;
  // The top of the chain may be the anchor itself (byte-equal) or be issued by one.
  for (const anchor of store.anchors) {
    if (anchor.raw.equals(top.raw) && certs.length > 1) {
      checkValidity(anchor, floorMs, 'trust anchor');
      return leaf;
    }
  }
  for (const anchor of store.anchors) {
    if (issuedBy(top, anchor)) {
      checkValidity(anchor, floorMs, 'trust anchor');
      return leaf;
    }
  }
  throw new UpdateError(
    'UPDATE_ERR_UNKNOWN_SIGNER',
    `no trust anchor (${store.channel}) issued '${top.issuer.replace(/\n/g, ',')}'`,
  );
}

function parseAnchors(pem: string): X509Certificate[] {
  return pemToDers(pem).map((d) => new X509Certificate(d));
}

export interface LoadTrustStoreOptions {
  /** Provisioned anchors: `<provisionedDir>/<channel>/*.pem` (read-only in the image). */
  provisionedDir: string;
  channel: TrustChannel;
  /** Rotated anchors written by a trust payload; replaces the provisioned set of the channel. */
  rotatedFile: string;
  pinnedCores?: string[];
}

export async function loadTrustStore(opts: LoadTrustStoreOptions): Promise<TrustStore> {
  const rotated = await readFileIfExists(opts.rotatedFile);
  if (rotated) {
    const doc = JSON.parse(rotated.toString('utf8')) as { channel?: string; anchors?: string };
    if (doc.channel === opts.channel && typeof doc.anchors === 'string') {
      return new TrustStore({
        channel: opts.channel,
        anchors: parseAnchors(doc.anchors),
        pinnedCores: opts.pinnedCores ?? [],
      });
    }
  }
  const dir = join(opts.provisionedDir, opts.channel);
  let names: string[] = [];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.pem')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const anchors: X509Certificate[] = [];
  for (const n of names) anchors.push(...parseAnchors(await readFile(join(dir, n), 'utf8')));
  return new TrustStore({ channel: opts.channel, anchors, pinnedCores: opts.pinnedCores ?? [] });
}

/** Parse a trust payload: JSON `{ "channel": "release"|"dev", "anchors": "<PEM text>" }`. */
export function decodeTrustPayload(bytes: Buffer): { channel: TrustChannel; anchors: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new UpdateError('UPDATE_ERR_ARCHIVE', 'trust payload is not JSON', { cause: err });
  }
  const d = doc as { channel?: unknown; anchors?: unknown };
  if ((d.channel !== 'release' && d.channel !== 'dev') || typeof d.anchors !== 'string') {
    throw new UpdateError('UPDATE_ERR_ARCHIVE', 'trust payload needs channel and anchors');
  }
  const certs = parseAnchors(d.anchors);
  if (certs.length === 0 || certs.some((c) => !c.ca))
    throw new UpdateError('UPDATE_ERR_ARCHIVE', 'trust payload anchors must be CA certificates');
  return { channel: d.channel, anchors: d.anchors };
}

export async function writeRotatedAnchors(
  file: string,
  payload: { channel: TrustChannel; anchors: string },
): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(payload));
}
