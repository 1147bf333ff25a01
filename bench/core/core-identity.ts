/**
 * The Core's identity and its pins, kept in one directory (`<state-dir>/identity`, or a directory
 * shared by a redundant pair so both Cores are the same Core to the peripherals):
 *   core-key.pem   P-256 private key (0600; refused when group or others can read it)
 *   core-cert.pem  self-signed-by-its-own-CA certificate presented as the TLS client certificate
 *   pins.json      peripheral name -> SHA-256 fingerprint of the certificate first seen
 */
import { X509Certificate } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileIfExists, writeFileAtomic } from '../../firmware/config/atomic-file.js';
import { createAuthority, generateKeyPem, issueCertificate } from '../../firmware/pki/issuer.js';
import { CoreError } from './errors.js';

export interface CoreIdentity {
  key: string;
  cert: string;
  fingerprint256: string;
}

const DAY_MS = 86_400_000;

/** Load the Core's key and certificate, creating them on first use. */
export async function openCoreIdentity(
  dir: string,
  coreName: string,
  nowMs = Date.now(),
): Promise<CoreIdentity> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'core-key.pem');
  const certFile = join(dir, 'core-cert.pem');
  let key = (await readFileIfExists(keyFile))?.toString('utf8') ?? null;
  let cert = (await readFileIfExists(certFile))?.toString('utf8') ?? null;
  if (key && cert) {
    const mode = (await stat(keyFile)).mode & 0o077;
    if (mode !== 0) throw new CoreError('CORE_ERR_IDENTITY', `${keyFile} is readable by group or others`);
  } else {
    const from = new Date(nowMs - DAY_MS);
    const to = new Date(nowMs + 3650 * DAY_MS);
    const ca = await createAuthority(`${coreName} identity`, from, to);
    key = await generateKeyPem();
    cert = await issueCertificate(ca, {
      subjectKeyPem: key,
      commonName: coreName,
      notBefore: from,
      notAfter: to,
    });
    await writeFileAtomic(keyFile, key, { mode: 0o600 });
    await writeFileAtomic(certFile, cert, { mode: 0o644 });
  }
  return { key, cert, fingerprint256: new X509Certificate(cert).fingerprint256 };
}

/** Peripheral certificate pins (trust on first claim, then refuse a changed certificate). */
export class PinStore {
  private pins: Record<string, string> = {};
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly file: string) {}

  static async open(dir: string): Promise<PinStore> {
    const s = new PinStore(join(dir, 'pins.json'));
    const raw = await readFileIfExists(s.file);
    if (raw) {
      try {
        const v = JSON.parse(raw.toString('utf8')) as unknown;
        if (v && typeof v === 'object') {
          for (const [k, fp] of Object.entries(v)) if (typeof fp === 'string') s.pins[k.toLowerCase()] = fp;
        }
      } catch {
        // A damaged pin file pins nothing new; the next pin rewrites it.
      }
    }
    return s;
  }

  get(name: string): string | null {
    return this.pins[name.toLowerCase()] ?? null;
  }

  all(): Readonly<Record<string, string>> {
    return { ...this.pins };
  }

  /**
   * Check a peripheral's certificate against its pin: 'new' (nothing pinned yet), 'match', or a
   * CORE_ERR_PIN_MISMATCH error.
   */
  check(name: string, fingerprint256: string): 'new' | 'match' {
    const pinned = this.get(name);
    if (pinned === null) return 'new';
    if (pinned === fingerprint256) return 'match';
    throw new CoreError('CORE_ERR_PIN_MISMATCH', `${name} presents a certificate other than the pinned one`, {
      pinned,
      presented: fingerprint256,
    });
  }

  pin(name: string, fingerprint256: string): Promise<void> {
    this.pins[name.toLowerCase()] = fingerprint256;
    const text = JSON.stringify(this.pins, null, 2) + '\n';
    this.writing = this.writing
      .catch(() => undefined)
      .then(() => writeFileAtomic(this.file, text, { mode: 0o600 }));
    return this.writing;
  }

  /** Forget a pin (the administrator accepts a peripheral's new certificate). */
  forget(name: string): Promise<void> {
    delete this.pins[name.toLowerCase()];
    const text = JSON.stringify(this.pins, null, 2) + '\n';
    this.writing = this.writing
      .catch(() => undefined)
      .then(() => writeFileAtomic(this.file, text, { mode: 0o600 }));
    return this.writing;
  }
}
