import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import {
  DeviceIdentity,
  PkiError,
  createAuthority,
  generateKeyPem,
  issueCertificate,
  loadAuthority,
} from '../../../firmware/pki/index.js';
import { x509 } from '../../../firmware/pki/x509.js';

const DAY = 86_400_000;

async function rig(
  t: { teardown(fn: () => unknown): void },
  opts: { hostname?: string; addresses?: string[] } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'qp-pki-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const clock = new FakeClock(0, Date.UTC(2026, 5, 1));
  const logger = createMemoryLogger();
  const open = (more: { hostname?: string; addresses?: string[] } = {}) =>
    DeviceIdentity.open({
      dir,
      hostname: more.hostname ?? opts.hostname ?? 'qperiph-1234',
      addresses: more.addresses ?? opts.addresses ?? ['127.0.3.1', '10.0.0.5'],
      clock,
      logger,
    });
  return { dir, clock, logger, open };
}

t.test(
  'first start: P-256 key file 0600, self-signed certificate with SAN = hostname + every IP',
  async (t) => {
    const r = await rig(t);
    const id = await r.open();
    const keyStat = await stat(join(r.dir, 'device-key.pem'));
    t.equal(keyStat.mode & 0o777, 0o600);
    const m = id.identity();
    const cert = new X509Certificate(m.cert);
    t.equal(cert.subjectAltName, 'DNS:qperiph-1234, IP Address:127.0.3.1, IP Address:10.0.0.5');
    t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    t.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(m.key)));
    t.equal(id.info().kind, 'self-signed');
    t.match(id.info().leaf.fingerprint256, /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/);
    t.equal(id.info().leaf.fingerprint256, cert.fingerprint256);

    // second start: same key and certificate
    const again = await r.open();
    t.equal(again.identity().key, m.key);
    t.equal(again.identity().cert, m.cert);
    // names changed: same key, new certificate
    const renamed = await r.open({ addresses: ['127.0.3.1', '10.0.0.6'] });
    t.equal(renamed.identity().key, m.key);
    t.not(renamed.identity().cert, m.cert);
    t.match(new X509Certificate(renamed.identity().cert).subjectAltName, /10\.0\.0\.6/);
  },
);

t.test('refuses to start when the key file is readable by group or others', async (t) => {
  const r = await rig(t);
  await r.open();
  await chmod(join(r.dir, 'device-key.pem'), 0o644);
  await t.rejects(r.open(), { code: 'PKI_ERR_KEY_PERMISSIONS' });
  await chmod(join(r.dir, 'device-key.pem'), 0o640);
  await t.rejects(r.open(), { code: 'PKI_ERR_KEY_PERMISSIONS' });
  await chmod(join(r.dir, 'device-key.pem'), 0o600);
  await t.resolves(r.open());
});

t.test('CSR carries the subject fields and names, signed by the device key', async (t) => {
  const r = await rig(t);
  const id = await r.open();
  const pem = await id.createCsr({
    C: 'US',
    ST: 'California',
    L: 'Costa Mesa',
    O: 'Bench, Inc.',
    OU: 'Test',
    CN: 'dev-1',
    email: 'ops@example.com',
    ips: ['10.0.0.5'],
    dnsNames: ['dev-1.example.com'],
  });
  t.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----/);
  const csr = new x509.Pkcs10CertificateRequest(pem);
  t.ok(await csr.verify());
  t.match(csr.subject, /C=US/);
  t.match(csr.subject, /O=Bench\\, Inc\./);
  t.match(csr.subject, /CN=dev-1/);
  t.match(csr.subject, /E=ops@example.com/);
  const sanExt = csr.extensions.find((e) => e.type === '2.5.29.17')!;
  const san = new x509.SubjectAlternativeNameExtension(sanExt.rawData);
  t.same(
    san.names
      .toJSON()
      .map((n) => n.value)
      .sort(),
    ['10.0.0.5', 'dev-1.example.com'],
  );
  const spki = Buffer.from(csr.publicKey.rawData);
  const devicePub = (await import('node:crypto'))
    .createPublicKey(id.identity().key)
    .export({ format: 'der', type: 'spki' });
  t.ok(spki.equals(devicePub), 'CSR is for the device key');
  await t.rejects(id.createCsr({ C: 'USA' }), { code: 'PKI_ERR_BAD_SUBJECT', message: /C:/ });
  await t.rejects(id.createCsr({ ips: ['300.1.1.1'] }), { code: 'PKI_ERR_BAD_SUBJECT' });
  await t.rejects(id.createCsr({ CN: 'a\nb' }), { code: 'PKI_ERR_BAD_SUBJECT' });
});

t.test(
  'install: checked against key, chain and validity; hot swap; remove returns to self-signed',
  async (t) => {
    const r = await rig(t);
    const id = await r.open();
    const now = r.clock.wallMs();
    const root = await createAuthority('Bench Root', new Date(now - DAY), new Date(now + 3650 * DAY));
    const interKey = await generateKeyPem();
    const interPem = await issueCertificate(root, {
      subjectKeyPem: interKey,
      commonName: 'Bench Intermediate',
      isCa: true,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 1000 * DAY),
    });
    const inter = await loadAuthority(interKey, interPem);
    const leaf = await issueCertificate(inter, {
      subjectKeyPem: id.identity().key,
      commonName: 'qperiph-1234',
      dnsNames: ['qperiph-1234'],
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 365 * DAY),
    });
    const selfSigned = id.identity().cert;
    const changes: string[] = [];
    id.onChange((m) => changes.push(m.cert));

    const refuse = async (pem: string, code: string, why: string) => {
      await t.rejects(id.install(pem), { code }, why);
      t.equal(id.identity().cert, selfSigned, `${why}: nothing changed`);
      t.equal(id.info().kind, 'self-signed');
    };
    await refuse('hello', 'PKI_ERR_BAD_PEM', 'not PEM');
    await refuse(
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      'PKI_ERR_BAD_PEM',
      'garbage base64',
    );
    await refuse(id.identity().key, 'PKI_ERR_BAD_PEM', 'a private key');
    await refuse('x'.repeat(70_000), 'PKI_ERR_TOO_LARGE', 'oversized');
    const other = await issueCertificate(root, {
      subjectKeyPem: await generateKeyPem(),
      commonName: 'someone-else',
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 365 * DAY),
    });
    await refuse(other + root.certPem, 'PKI_ERR_KEY_MISMATCH', 'certificate for another key');
    const expired = await issueCertificate(root, {
      subjectKeyPem: id.identity().key,
      commonName: 'old',
      notBefore: new Date(now - 400 * DAY),
      notAfter: new Date(now - DAY),
    });
    await refuse(expired, 'PKI_ERR_EXPIRED', 'expired');
    const future = await issueCertificate(root, {
      subjectKeyPem: id.identity().key,
      commonName: 'future',
      notBefore: new Date(now + DAY),
      notAfter: new Date(now + 9 * DAY),
    });
    await refuse(future, 'PKI_ERR_NOT_YET_VALID', 'not yet valid');
    await refuse(leaf + root.certPem, 'PKI_ERR_CHAIN', 'intermediate missing from the chain');
    const notCa = await issueCertificate(root, {
      subjectKeyPem: interKey,
      commonName: 'Bench Intermediate',
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 100 * DAY),
    });
    await refuse(leaf + notCa, 'PKI_ERR_CHAIN', 'issuer is not a CA');
    t.equal(changes.length, 0);

    const info = await id.install(leaf + interPem + root.certPem);
    t.equal(info.kind, 'installed');
    t.match(info.leaf.issuer, /Bench Intermediate/);
    t.equal(info.chain.length, 2);
    t.equal(changes.length, 1, 'listeners told (hot reload)');
    t.match(id.identity().cert, /BEGIN CERTIFICATE[\s\S]*BEGIN CERTIFICATE[\s\S]*BEGIN CERTIFICATE/);
    // survives a restart
    const reopened = await r.open();
    t.equal(reopened.info().kind, 'installed');
    t.equal(reopened.info().leaf.fingerprint256, info.leaf.fingerprint256);

    const back = await id.remove();
    t.equal(back.kind, 'self-signed');
    t.equal(id.identity().cert, selfSigned);
    t.equal(changes.length, 2);
    await t.rejects(readFile(join(r.dir, 'installed.pem')), { code: 'ENOENT' });
    t.equal((await r.open()).info().kind, 'self-signed');

    // an installed file that stopped being usable (expired while off) falls back with a warning
    await writeFile(join(r.dir, 'installed.pem'), expired);
    t.equal((await r.open()).info().kind, 'self-signed');
    t.ok(r.logger.records.some((x) => x.event === 'pki_installed_unusable'));
    t.type(new PkiError('PKI_ERR_CHAIN', 'x'), Error);
  },
);
