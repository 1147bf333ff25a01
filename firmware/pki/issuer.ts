/**
 * A small certificate authority (ECDSA P-256): make a CA and issue certificates for a given public
 * key. The bench's emulated Core and the tests use it to sign device certificates; the device
 * itself never issues certificates for others.
 */
import { createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { EC_P256, x509 } from './x509.js';

export interface Authority {
  keyPem: string;
  certPem: string;
  keys: { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey };
  cert: x509.X509Certificate;
}

export interface IssueRequest {
  /** PEM public or private key (the public half is used). */
  subjectKeyPem: string;
  commonName: string;
  dnsNames?: string[];
  ips?: string[];
  notBefore: Date;
  notAfter: Date;
  isCa?: boolean;
  /** 'server' (serverAuth + clientAuth, the default) or 'client'. */
  usage?: 'server' | 'client';
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

async function pemOfPrivate(key: webcrypto.CryptoKey): Promise<string> {
  const b64 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key)).toString('base64');
  return `-----BEGIN PRIVATE KEY-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
}

export async function createAuthority(
  commonName: string,
  notBefore: Date,
  notAfter: Date,
): Promise<Authority> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as Authority['keys'];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: [commonName] }],
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keyPem: await pemOfPrivate(keys.privateKey), certPem: cert.toString('pem') + '\n', keys, cert };
}

/** A certificate for `subjectKeyPem`, signed by `ca`. */
export async function issueCertificate(ca: Authority, req: IssueRequest): Promise<string> {
  const spki = createPublicKey(req.subjectKeyPem).export({ format: 'der', type: 'spki' });
  const publicKey = await webcrypto.subtle.importKey('spki', spki, EC_P256, true, ['verify']);
  const names = [
    ...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(req.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(req.isCa === true, undefined, true),
    new x509.KeyUsagesExtension(
      req.isCa
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
        : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (!req.isCa) {
    extensions.push(
      new x509.ExtendedKeyUsageExtension(
        req.usage === 'client'
          ? [x509.ExtendedKeyUsage.clientAuth]
          : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ),
    );
  }
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [req.commonName] }],
    issuer: ca.cert.subject,
    notBefore: req.notBefore,
    notAfter: req.notAfter,
    publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: EC_P256,
    extensions,
  });
  return cert.toString('pem') + '\n';
}

/** A fresh ECDSA P-256 private key as PKCS#8 PEM. */
export async function generateKeyPem(): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as Authority['keys'];
  return pemOfPrivate(keys.privateKey);
}

/** An Authority from an existing CA key and certificate (PEM). */
export async function loadAuthority(keyPem: string, certPem: string): Promise<Authority> {
  const { createPrivateKey } = await import('node:crypto');
  const key = createPrivateKey(keyPem);
  const privateKey = await webcrypto.subtle.importKey(
    'pkcs8',
    key.export({ format: 'der', type: 'pkcs8' }),
    EC_P256,
    true,
    ['sign'],
  );
  const publicKey = await webcrypto.subtle.importKey(
    'spki',
    createPublicKey(key).export({ format: 'der', type: 'spki' }),
    EC_P256,
    true,
    ['verify'],
  );
  return { keyPem, certPem, keys: { privateKey, publicKey }, cert: new x509.X509Certificate(certPem) };
}
