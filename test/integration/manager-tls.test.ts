/**
 * The manager on real sockets (127.0.3.1, ports 19080/19443): openssl s_client for the TLS
 * policy, certificate hot reload seen by a TLS client, live WebSocket updates on both ports with
 * the session cookie, and redirect-only HTTP.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { WebSocket } from 'ws';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../firmware/config/board-config.js';
import { StateStore } from '../../firmware/config/state-store.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import { findProjectRoot } from '../../firmware/paths.js';
import { PeripheralManager } from '../../firmware/peripheral-manager/index.js';
import { createAuthority, issueCertificate } from '../../firmware/pki/index.js';

const HOST = '127.0.3.1';
const HTTP_PORT = 19080;
const HTTPS_PORT = 19443;

function haveOpenssl(): Promise<boolean> {
  return new Promise((resolve) => execFile('openssl', ['version'], (err) => resolve(!err)));
}

function sClient(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'openssl',
      ['s_client', '-connect', `${HOST}:${HTTPS_PORT}`, '-servername', 'qperiph-test', ...args],
      { timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    child.stdin?.end('Q\n');
  });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(
  secure: boolean,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const opts = {
      host: HOST,
      port: secure ? HTTPS_PORT : HTTP_PORT,
      method,
      path,
      rejectUnauthorized: false,
      headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers },
    };
    const req = (secure ? httpsRequest : httpRequest)(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function peerFingerprint(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { host: HOST, port: HTTPS_PORT, rejectUnauthorized: false, servername: 'qperiph-test' },
      () => {
        const fp = s.getPeerCertificate().fingerprint256;
        s.end();
        resolve(fp);
      },
    );
    s.on('error', reject);
  });
}

t.test('manager on real sockets', async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-mgr-tls-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const logger = createMemoryLogger();
  const clock = createSystemClock();
  const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'), {
    lanAAddress: HOST,
  });
  const state = await StateStore.open({ dir: stateDir, logger, clock });
  const mgr = await PeripheralManager.create({
    httpPort: HTTP_PORT,
    httpsPort: HTTPS_PORT,
    host: HOST,
    board,
    state,
    stateDir,
    logger,
    clock,
    name: 'qperiph-tls',
    interfaces: () => ({
      lo: [{ address: HOST, netmask: '255.0.0.0', mac: '00:00:00:00:00:00', internal: true }],
    }),
  });
  t.teardown(() => mgr.stop());
  const ports = await mgr.start();
  t.same(ports, { httpPort: HTTP_PORT, httpsPort: HTTPS_PORT });

  t.test(
    'openssl s_client: TLS 1.3 + TLS_AES_128_GCM_SHA256 only',
    { skip: !(await haveOpenssl()) && 'openssl not installed' },
    async (t) => {
      const good = await sClient(['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256']);
      t.match(good.out, /New, TLSv1\.3, Cipher is TLS_AES_128_GCM_SHA256/);
      t.match(good.out, /Peer signature type: ECDSA/);
      const anySuite = await sClient(['-tls1_3']);
      t.match(
        anySuite.out,
        /Cipher is TLS_AES_128_GCM_SHA256/,
        'server picks the one suite even when others are offered',
      );
      const tls12 = await sClient(['-tls1_2']);
      t.notMatch(tls12.out, /Cipher is (?!\(NONE\))/, 'TLS 1.2 refused');
      t.match(tls12.out, /alert|no protocols available|handshake failure|wrong version/i);
      const otherSuite = await sClient([
        '-tls1_3',
        '-ciphersuites',
        'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
      ]);
      t.notMatch(
        otherSuite.out,
        /New, TLSv1\.3, Cipher is TLS_/,
        'other TLS 1.3 suites refused unless configured',
      );
    },
  );

  // first use over HTTPS, then a session for the WebSocket tests
  const res = await call(true, 'POST', '/api/v1/auth/setup', { password: 'correct horse' });
  t.equal(res.status, 200);
  t.equal(res.headers['strict-transport-security'], 'max-age=31536000');
  const cookie = String(res.headers['set-cookie']).split(';')[0]!;
  const csrf = (JSON.parse(res.body) as { csrf: string }).csrf;

  t.test('certificate install is hot-reloaded', async (t) => {
    const before = await peerFingerprint();
    t.equal(before, mgr.ctx.identity.info().leaf.fingerprint256);
    const now = Date.now();
    const ca = await createAuthority('Bench CA', new Date(now - 86_400_000), new Date(now + 30 * 86_400_000));
    const leaf = await issueCertificate(ca, {
      subjectKeyPem: mgr.identity().key,
      commonName: 'qperiph-tls',
      ips: [HOST],
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 86_400_000),
    });
    const r = await call(
      true,
      'PUT',
      '/api/v1/certificate',
      { pem: leaf + ca.certPem },
      { cookie, 'x-csrf-token': csrf },
    );
    t.equal(r.status, 200);
    const after = await peerFingerprint();
    t.not(after, before);
    t.equal(after, (JSON.parse(r.body) as { leaf: { fingerprint256: string } }).leaf.fingerprint256);
    await call(true, 'DELETE', '/api/v1/certificate', undefined, { cookie, 'x-csrf-token': csrf });
    t.equal(await peerFingerprint(), before, 'back to self-signed');
  });

  const liveFrames = (url: string, headers: Record<string, string>, n: number) =>
    new Promise<Array<{ meters: number[]; status: { name: string } }>>((resolve, reject) => {
      const ws = new WebSocket(url, { headers, rejectUnauthorized: false });
      const frames: Array<{ meters: number[]; status: { name: string } }> = [];
      ws.on('message', (data) => {
        frames.push(JSON.parse(String(data)) as never);
        if (frames.length === n) {
          ws.close();
          resolve(frames);
        }
      });
      ws.on('unexpected-response', (_req, r) => reject(new Error(`HTTP ${r.statusCode}`)));
      ws.on('error', reject);
    });

  t.test('live WebSocket on both ports, same auth', async (t) => {
    for (const [scheme, port] of [
      ['wss', HTTPS_PORT],
      ['ws', HTTP_PORT],
    ] as const) {
      const frames = await liveFrames(
        `${scheme}://${HOST}:${port}/api/v1/live`,
        { cookie, origin: `${scheme === 'wss' ? 'https' : 'http'}://${HOST}:${port}` },
        6,
      );
      t.equal(frames.length, 6, scheme);
      t.equal(frames[0]!.status.name, 'qperiph-tls');
      t.equal(frames[0]!.meters.length, 2, 'demo meters on the virtual board');
      const distinct = new Set(frames.map((f) => f.meters.join(',')));
      t.ok(distinct.size > 1, 'meters move');
      await t.rejects(
        liveFrames(`${scheme}://${HOST}:${port}/api/v1/live`, {}, 1),
        /HTTP 401/,
        `${scheme} without a session`,
      );
      await t.rejects(
        liveFrames(`${scheme}://${HOST}:${port}/api/v1/live`, { cookie, origin: 'https://evil.example' }, 1),
        /HTTP 403/,
        `${scheme} from another origin`,
      );
    }
    t.equal(mgr.liveClients, 0);
  });

  t.test('redirect-only HTTP', async (t) => {
    t.equal((await call(false, 'GET', '/')).status, 200);
    const r = await call(
      true,
      'PUT',
      '/api/v1/settings',
      { httpRedirectOnly: true },
      { cookie, 'x-csrf-token': csrf },
    );
    t.equal(r.status, 200);
    const red = await call(false, 'GET', '/cgi-bin/status_xml', undefined, { host: `${HOST}:${HTTP_PORT}` });
    t.equal(red.status, 301);
    t.equal(red.headers['location'], `https://${HOST}:${HTTPS_PORT}/cgi-bin/status_xml`);
    t.equal((await call(true, 'GET', '/')).status, 200);
  });
});

t.test('reachability probe for the network revert', async (t) => {
  const { createServer } = await import('node:net');
  const { createReachabilityProbe } = await import('../../firmware/netconfig/index.js');
  const server = createServer((s) => s.end());
  await new Promise<void>((resolve) => server.listen(19099, '127.0.3.1', resolve));
  t.teardown(() => server.close());
  t.equal(await createReachabilityProbe([{ host: '127.0.3.1', port: 19099 }])(), true, 'listening');
  t.equal(
    await createReachabilityProbe([{ host: '127.0.3.1', port: 19098 }])(),
    true,
    'refused still proves the path',
  );
  t.equal(await createReachabilityProbe([])(), false, 'no targets: not confirmed');
});
