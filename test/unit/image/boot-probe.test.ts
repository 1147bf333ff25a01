import t from 'tap';
import { createServer as createHttpServer } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../../firmware/log/logger.js';
import { judgeManagerProbe, probeManager } from '../../../scripts/image/boot-probe.js';
import { qemuArgs, watchBoot } from '../../../scripts/image/boot-smoke.js';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { DeviceIdentity } from '../../../firmware/pki/index.js';

t.test('qemu forwards only from host loopback to the Manager ports', async (t) => {
  const args = qemuArgs({ kernel: 'k', disk: 'd', append: 'x', forward: { https: 40443, http: 40080 } });
  t.ok(
    args.includes('user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40443-:443,hostfwd=tcp:127.0.0.1:40080-:80'),
  );
});

t.test('judging the Manager answers', async (t) => {
  const good = { https: { status: 200, subject: 'qperiph-rpi4-1a2b', html: true }, http: { status: 301 } };
  t.equal(judgeManagerProbe(good), null);
  t.match(judgeManagerProbe({ ...good, https: { ...good.https, status: 503 } }), /HTTPS \/ answered 503/);
  t.match(judgeManagerProbe({ ...good, https: { ...good.https, html: false } }), /UI page/);
  t.match(judgeManagerProbe({ ...good, https: { ...good.https, subject: '' } }), /no subject/);
  t.match(judgeManagerProbe({ ...good, http: { status: 500 } }), /HTTP \/ answered 500/);
});

t.test('probeManager reads a real HTTPS and HTTP server on loopback', async (t) => {
  // The device's own first-boot identity code makes the certificate.
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-probe-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const id = await DeviceIdentity.open({
    dir,
    hostname: 'qperiph-test-9f00',
    addresses: ['127.0.0.1'],
    clock: new FakeClock(0, Date.now()),
    logger: createMemoryLogger(),
  });
  const { key, cert } = id.identity();
  const https = createHttpsServer({ key, cert }, (_req, res) => res.end('<!doctype html><html></html>'));
  const http = createHttpServer((_req, res) => {
    res.writeHead(308, { location: 'https://x/' });
    res.end();
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    https.close();
    http.close();
  });
  const p = await probeManager(
    { https: (https.address() as AddressInfo).port, http: (http.address() as AddressInfo).port },
    5000,
  );
  t.same(p, {
    https: { status: 200, subject: 'qperiph-test-9f00', html: true },
    http: { status: 308, location: 'https://x/' },
  });
  t.equal(judgeManagerProbe(p), null);
});

t.test('watchBoot: READY, then the after-ready check decides', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qperiph-watch-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const script =
    'echo "Booting Linux"; echo "systemd[1]: Welcome to Debian"; echo "[  OK  ] Started qperiph.service - qperiph runtime"; sleep 30';
  const pass = await watchBoot(
    'sh',
    ['-c', script],
    10_000,
    silentLogger,
    join(dir, 'c.log'),
    async () => null,
  );
  t.equal(pass.ready, true);
  t.equal(pass.phase, 'ready');
  t.match(
    await readFile(join(dir, 'c.log'), 'utf8'),
    /Started qperiph\.service/,
    'the whole console is kept',
  );
  const fail = await watchBoot(
    'sh',
    ['-c', script],
    10_000,
    silentLogger,
    undefined,
    async () => 'HTTPS / answered 503',
  );
  t.equal(fail.ready, false);
  t.equal(fail.reason, 'HTTPS / answered 503');
  const died = await watchBoot('sh', ['-c', 'echo "Booting Linux"; exit 3'], 10_000, silentLogger);
  t.equal(died.ready, false);
  t.match(died.reason, /qemu exited \(3\)/);
});
