/**
 * The device identity: one ECDSA P-256 private key (never leaves the device) and the certificate
 * presented for it, either a self-signed one made at first start (SAN = hostname + every IP) or
 * a CA-signed chain an admin installed. Files in `dir`:
 *   device-key.pem   PKCS#8 private key, mode 0600; start is refused if group or others have any access
 *   self-signed.pem  regenerated when missing, expired, not for the key, or the names changed
 *   installed.pem    the installed chain (leaf first); removing it returns to self-signed
 * Other services take `identity()` (key + cert PEM) and may subscribe to changes for hot reload.
 */
import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
  X509Certificate,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { chmod, mkdir, stat, unlink } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { ClockSource } from '../clock/clock.js';
import { readFileIfExists, writeFileAtomic } from '../config/atomic-file.js';
import type { Logger } from '../log/logger.js';
import {
  checkInstallableChain,
  parseCertificatePem,
  PkiError,
  summarise,
  type CertSummary,
} from './cert-check.js';
import type * as X509 from '@peculiar/x509';
import { EC_P256 } from './ec.js';

/** @peculiar/x509 costs ~300 ms to load: only certificate and CSR generation need it. */
async function loadX509(): Promise<typeof X509> {
  return (await import('./x509.js')).x509;
}

export interface IdentityMaterial {
  /** PKCS#8 PEM private key. */
  key: string;
  /** PEM certificate, leaf first, followed by any chain. */
  cert: string;
}

export interface CertificateInfo {
  kind: 'self-signed' | 'installed';
  leaf: CertSummary;
  chain: CertSummary[];
}

/** CSR subject fields; all optional except CN (defaults to the hostname). */
export interface CsrRequest {
  C?: string;
  ST?: string;
  L?: string;
  O?: string;
  OU?: string;
  CN?: string;
  email?: string;
  ips?: string[];
  dnsNames?: string[];
}

export interface DeviceIdentityOptions {
  dir: string;
  /** Names for the self-signed certificate's SAN. */
  hostname: string;
  addresses: string[];
  clock: ClockSource;
  logger: Logger;
  /** Self-signed validity in days. Default 3650. */
  validityDays?: number;
}

const KEY_FILE = 'device-key.pem';
const SELF_FILE = 'self-signed.pem';
const INSTALLED_FILE = 'installed.pem';
const DAY_MS = 86_400_000;

function derToPem(label: string, der: ArrayBuffer | Buffer): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

async function cryptoKeys(
  key: KeyObject,
): Promise<{ privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey }> {
  const pkcs8 = key.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_P256, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', spki, EC_P256, true, ['verify']);
  return { privateKey, publicKey };
}

function sanEntries(dns: string[], ips: string[]): X509.JsonGeneralName[] {
  return [
    ...dns.map((value) => ({ type: 'dns' as const, value })),
    ...ips.map((value) => ({ type: 'ip' as const, value })),
  ];
}

// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const FIELD_RE = /^[^\u0000-\u001f\u007f]{1,64}$/;
const DNS_RE =
  /^(?=.{1,253}$)(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const EMAIL_RE = /^[^\s@]{1,64}@[^\s@]{1,190}$/;

/** Validate a CSR request; PKI_ERR_BAD_SUBJECT names the first bad field. */
export function validateCsrRequest(req: CsrRequest): void {
  const bad = (field: string, why: string): never => {
    throw new PkiError('PKI_ERR_BAD_SUBJECT', `${field}: ${why}`);
  };
  for (const f of ['ST', 'L', 'O', 'OU', 'CN'] as const) {
    const v = req[f];
    if (v !== undefined && !FIELD_RE.test(v)) bad(f, 'must be 1..64 printable characters');
  }
  if (req.C !== undefined && !/^[A-Z]{2}$/.test(req.C)) bad('C', 'must be a two-letter country code');
  if (req.email !== undefined && !EMAIL_RE.test(req.email)) bad('email', 'must be an e-mail address');
  (req.ips ?? []).forEach((ip, i) => isIP(ip) === 0 && bad(`ips[${i}]`, 'must be an IP address'));
  (req.dnsNames ?? []).forEach((d, i) => !DNS_RE.test(d) && bad(`dnsNames[${i}]`, 'must be a DNS name'));
  if ((req.ips?.length ?? 0) + (req.dnsNames?.length ?? 0) > 32) bad('ips/dnsNames', 'at most 32 names');
}

export class DeviceIdentity {
  private material: IdentityMaterial;
  private current: CertificateInfo;
  private readonly listeners = new Set<(m: IdentityMaterial) => void>();
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly options: DeviceIdentityOptions,
    private readonly key: KeyObject,
    private readonly keyPem: string,
    private selfSignedPem: string,
    installedPem: string | null,
    private readonly log: Logger,
  ) {
    this.material = { key: keyPem, cert: installedPem ?? selfSignedPem };
    this.current = DeviceIdentity.describe(
      installedPem ?? selfSignedPem,
      installedPem ? 'installed' : 'self-signed',
    );
  }

  private static describe(pem: string, kind: CertificateInfo['kind']): CertificateInfo {
    const certs = parseCertificatePem(pem);
    return { kind, leaf: summarise(certs[0]!), chain: certs.slice(1).map(summarise) };
  }

  /** Load or create the key and certificates. Throws PKI_ERR_KEY_PERMISSIONS when the key file is not private. */
  static async open(options: DeviceIdentityOptions): Promise<DeviceIdentity> {
    const log = options.logger.child({ module: 'pki' });
    const { dir, clock } = options;
    await io(`create ${dir}`, () => mkdir(dir, { recursive: true, mode: 0o700 }));
    const keyFile = join(dir, KEY_FILE);
    let keyPem: string;
    const existing = await io(`read ${keyFile}`, () => readFileIfExists(keyFile));
    if (existing) {
      const st = await io(`stat ${keyFile}`, () => stat(keyFile));
      if ((st.mode & 0o077) !== 0) {
        throw new PkiError(
          'PKI_ERR_KEY_PERMISSIONS',
          `${keyFile} has mode ${(st.mode & 0o777).toString(8)}; group/others must have no access (chmod 600)`,
        );
      }
      keyPem = existing.toString('utf8');
    } else {
      const pair = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
      keyPem = derToPem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', pair.privateKey));
      await io(`write ${keyFile}`, () => writeFileAtomic(keyFile, keyPem, { mode: 0o600 }));
      log.info('pki_key_generated', { file: keyFile });
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem);
    } catch (err) {
      throw new PkiError('PKI_ERR_BAD_PEM', `${keyFile} is not a readable private key`, -1, { cause: err });
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new PkiError('PKI_ERR_BAD_PEM', `${keyFile} is not an ECDSA P-256 key`);
    }

    const selfFile = join(dir, SELF_FILE);
    let selfPem = (await io(`read ${selfFile}`, () => readFileIfExists(selfFile)))?.toString('utf8') ?? null;
    const reason =
      selfPem === null ? 'missing' : DeviceIdentity.staleReason(selfPem, key, options, clock.wallMs());
    if (reason) {
      selfPem = await DeviceIdentity.makeSelfSigned(key, options);
      await io(`write ${selfFile}`, () => writeFileAtomic(selfFile, selfPem!, { mode: 0o644 }));
      log.info('pki_self_signed_generated', {
        reason,
        hostname: options.hostname,
        addresses: options.addresses,
      });
    }

    const installedFile = join(dir, INSTALLED_FILE);
    let installed =
      (await io(`read ${installedFile}`, () => readFileIfExists(installedFile)))?.toString('utf8') ?? null;
    if (installed !== null) {
      try {
        checkInstallableChain(installed, key, clock.wallMs());
      } catch (err) {
        log.warn('pki_installed_unusable', { err, file: installedFile, using: 'self-signed' });
        installed = null;
      }
    }
    return new DeviceIdentity(options, key, keyPem, selfPem!, installed, log);
  }

  private static staleReason(
    pem: string,
    key: KeyObject,
    o: DeviceIdentityOptions,
    nowMs: number,
  ): string | null {
    let cert: X509Certificate;
    try {
      cert = parseCertificatePem(pem)[0]!;
    } catch {
      return 'unreadable';
    }
    if (!cert.checkPrivateKey(key)) return 'key changed';
    if (Date.parse(cert.validTo) < nowMs + 30 * DAY_MS) return 'expiring';
    const san = cert.subjectAltName ?? '';
    const want = [`DNS:${o.hostname}`, ...o.addresses.map((a) => `IP Address:${a}`)];
    return want.every((w) => san.split(', ').includes(w)) ? null : 'names changed';
  }

  private static async makeSelfSigned(key: KeyObject, o: DeviceIdentityOptions): Promise<string> {
    const keys = await cryptoKeys(key);
    const now = o.clock.wallMs();
    const serial = randomBytes(16);
    serial[0] = serial[0]! & 0x7f;
    const x509 = await loadX509();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial.toString('hex'),
      name: [{ CN: [o.hostname] }, { O: ['qperiph'] }],
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + (o.validityDays ?? 3650) * DAY_MS),
      keys,
      signingAlgorithm: EC_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension(sanEntries([o.hostname], o.addresses)),
      ],
    });
    return cert.toString('pem') + '\n';
  }

  /** The key and certificate to serve right now. */
  identity(): IdentityMaterial {
    return this.material;
  }

  info(): CertificateInfo {
    return this.current;
  }

  /** Called with the new material after every install/remove (hot reload). Returns an unsubscribe. */
  onChange(fn: (m: IdentityMaterial) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A PKCS#10 request for the device key, as PEM. */
  async createCsr(req: CsrRequest): Promise<string> {
    validateCsrRequest(req);
    const x509 = await loadX509();
    const name: X509.JsonName = [];
    for (const f of ['C', 'ST', 'L', 'O', 'OU'] as const) {
      const v = req[f];
      if (v) name.push({ [f]: [v] });
    }
    name.push({ CN: [req.CN ?? this.options.hostname] });
    if (req.email) name.push({ E: [req.email] });
    const dns = req.dnsNames ?? [this.options.hostname];
    const ips = req.ips ?? this.options.addresses;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name,
      keys: await cryptoKeys(this.key),
      signingAlgorithm: EC_P256,
      extensions:
        dns.length + ips.length > 0 ? [new x509.SubjectAlternativeNameExtension(sanEntries(dns, ips))] : [],
    });
    this.log.info('pki_csr_created', { cn: req.CN ?? this.options.hostname });
    return csr.toString('pem') + '\n';
  }

  /**
   * Install a CA-signed chain (leaf first). Checked before anything is written: PEM, key match,
   * validity, chain links. On any error nothing changes.
   */
  install(pem: string): Promise<CertificateInfo> {
    return this.serial(async () => {
      const certs = checkInstallableChain(pem, this.key, this.options.clock.wallMs());
      const normalised = certs.map((c) => c.toString()).join('');
      await io('write installed.pem', () =>
        writeFileAtomic(join(this.options.dir, INSTALLED_FILE), normalised, { mode: 0o644 }),
      );
      this.swap(normalised, 'installed');
      this.log.info('pki_certificate_installed', {
        subject: this.current.leaf.subject,
        issuer: this.current.leaf.issuer,
        fingerprint256: this.current.leaf.fingerprint256,
      });
      return this.current;
    });
  }

  /** Remove the installed certificate and go back to the self-signed one. */
  remove(): Promise<CertificateInfo> {
    return this.serial(async () => {
      await io('remove installed.pem', () =>
        unlink(join(this.options.dir, INSTALLED_FILE)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      );
      if (this.current.kind === 'installed') {
        this.swap(this.selfSignedPem, 'self-signed');
        this.log.info('pki_certificate_removed', { fingerprint256: this.current.leaf.fingerprint256 });
      }
      return this.current;
    });
  }

  private swap(certPem: string, kind: CertificateInfo['kind']): void {
    this.material = { key: this.keyPem, cert: certPem };
    this.current = DeviceIdentity.describe(certPem, kind);
    for (const fn of this.listeners) {
      try {
        fn(this.material);
      } catch (err) {
        this.log.error('pki_listener_failed', { err });
      }
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

async function io<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError(
      'PKI_ERR_IO',
      `cannot ${what}: ${String((err as NodeJS.ErrnoException).code ?? err)}`,
      -1,
      {
        cause: err,
      },
    );
  }
}

/** Make an existing key file private (used by tooling, never implicitly at start). */
export async function fixKeyPermissions(dir: string): Promise<void> {
  await chmod(join(dir, KEY_FILE), 0o600);
}
