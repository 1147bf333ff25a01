/**
 * The Core's HTTPS config push (contract A client) against a local HTTPS server on 127.0.6.20:
 * the client certificate is presented, a pinned server certificate passes, a different one aborts
 * before the body is sent, non-2xx answers become CORE_ERR_HTTP with the device's code.
 */
import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import t from 'tap';
import { pushCoreConfig } from '../../bench/core/config-push.js';
import { createAuthority, generateKeyPem, issueCertificate } from '../../firmware/pki/issuer.js';

const HOST = '127.0.6.20';
const DAY = 86_400_000;

async function leaf(cn: string): Promise<{ key: string; cert: string; fp: string }> {
  const ca = await createAuthority(`${cn} CA`, new Date(Date.now() - DAY), new Date(Date.now() + DAY));
  const key = await generateKeyPem();
  const cert = await issueCertificate(ca, {
    subjectKeyPem: key,
    commonName: cn,
    ips: [HOST],
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
  });
  return { key, cert, fp: new X509Certificate(cert).fingerprint256 };
}

t.test('config push: pinned server, client certificate, errors', async (t) => {
  const server = await leaf('device');
  const other = await leaf('impostor');
  const core = await leaf('core');
  const seen: Array<{ clientFp: string | null; body: string }> = [];
  let status = 200;
  const srv = https.createServer(
    {
      key: server.key,
      cert: server.cert,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
    (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({
          clientFp: (req.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? null,
          body,
        });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            status === 200 ? { applied: ['design'] } : { code: 'CORE_ERR_NOT_PINNED', message: 'no' },
          ),
        );
      });
    },
  );
  await new Promise<void>((r) => srv.listen(0, HOST, () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as { port: number }).port;
  const body = {
    design: { name: 'D', code: 'D1', role: 'io-1', primary: true, redundant: false },
    controls: { g: 1 },
  };
  const opts = { host: HOST, port, clientTls: { key: core.key, cert: core.cert } };

  const ok = await pushCoreConfig({ ...opts, pinned: server.fp }, body);
  t.equal(ok.status, 200);
  t.same(ok.body, { applied: ['design'] });
  t.equal(ok.fingerprint256, server.fp);
  t.equal(seen[0]!.clientFp, core.fp, 'the Core presented its client certificate');
  t.same(JSON.parse(seen[0]!.body), body);

  const first = await pushCoreConfig({ ...opts, pinned: null }, body);
  t.equal(first.fingerprint256, server.fp, 'first use: any certificate, fingerprint reported to pin');

  await t.rejects(pushCoreConfig({ ...opts, pinned: other.fp }, body), { code: 'CORE_ERR_PIN_MISMATCH' });
  t.equal(seen.length, 2, 'nothing reached the server with the wrong certificate');

  status = 403;
  await t.rejects(pushCoreConfig({ ...opts, pinned: server.fp }, body), {
    code: 'CORE_ERR_HTTP',
    detail: { status: 403, code: 'CORE_ERR_NOT_PINNED' },
  });
});
