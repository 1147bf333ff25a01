import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FakeClock } from '../../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import { StateStore } from '../../../firmware/config/state-store.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetBinding, NetconfigService } from '../../../firmware/netconfig/index.js';
import { findProjectRoot } from '../../../firmware/paths.js';
import { PeripheralManager, type ManagerHooks } from '../../../firmware/peripheral-manager/index.js';
import { createAuthority, issueCertificate } from '../../../firmware/pki/index.js';

const DAY = 86_400_000;
const FP = (n: number) =>
  Array.from({ length: 32 }, (_, i) => ((i * 7 + n) & 0xff).toString(16).padStart(2, '0').toUpperCase()).join(
    ':',
  );

type Inject = PeripheralManager['https']['inject'];
type Res = Awaited<ReturnType<Inject>>;

async function rig(t: { teardown(fn: () => unknown): void }, hooks: ManagerHooks = {}) {
  const stateDir = await mkdtemp(join(tmpdir(), 'qp-mgr-'));
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const clock = new FakeClock(0, Date.UTC(2026, 5, 1));
  const logger = createMemoryLogger();
  const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'), {
    lanAAddress: '127.0.3.1',
  });
  const state = await StateStore.open({ dir: stateDir, logger, clock });
  await state.update((s) => {
    s.name = 'qperiph-abcd';
    s.pendingCores.push({ name: 'core-1', fingerprint256: FP(1), addedAt: '2026-01-01T00:00:00.000Z' });
  });
  const net = new FakeNetBinding();
  const netconfig = await NetconfigService.open({
    binding: net,
    clock,
    logger,
    stateDir,
    root: '/fake',
    backend: 'ifupdown',
    interfaces: { lanA: 'eth0', lanB: null },
    defaults: { hostname: 'qperiph-abcd', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
    revertAfterMs: 30_000,
  });
  const calls: string[] = [];
  const mgr = await PeripheralManager.create({
    httpPort: 0,
    httpsPort: 0,
    host: '127.0.3.1',
    board,
    state,
    stateDir,
    logger,
    clock,
    netconfig,
    interfaces: () => ({
      lo: [{ address: '127.0.3.1', netmask: '255.0.0.0', mac: '00:00:00:00:00:00', internal: true }],
    }),
    hooks: {
      identify: (on, s) => void calls.push(`identify ${on} ${s}`),
      reboot: () => void calls.push('reboot'),
      factoryReset: () => void calls.push('factory-reset'),
      meters: () => [-12.5, -30],
      ...hooks,
    },
  });
  t.teardown(() => mgr.stop());
  let cookie = '';
  let csrf = '';
  const req = async (
    method: string,
    url: string,
    body?: unknown,
    opts: {
      app?: 'http' | 'https';
      headers?: Record<string, string>;
      noAuth?: boolean;
      raw?: string;
      ip?: string;
    } = {},
  ): Promise<Res> => {
    const headers: Record<string, string> = { host: '127.0.3.1' };
    if (!opts.noAuth && cookie) headers['cookie'] = cookie;
    if (!opts.noAuth && csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
    Object.assign(headers, opts.headers ?? {});
    const res = await mgr[opts.app ?? 'https'].inject({
      method: method as 'GET',
      url,
      headers,
      remoteAddress: opts.ip ?? '127.0.3.9',
      ...(opts.raw !== undefined
        ? { payload: opts.raw }
        : body !== undefined
          ? { payload: body as object }
          : {}),
    });
    return res;
  };
  const login = (res: Res) => {
    const set = String(res.headers['set-cookie']);
    cookie = set.split(';')[0]!;
    csrf = (res.json() as { csrf: string }).csrf;
    return set;
  };
  return {
    mgr,
    clock,
    logger,
    state,
    net,
    req,
    login,
    calls,
    stateDir,
    reset: () => ((cookie = ''), (csrf = '')),
  };
}

t.test('first use, login, sessions, CSRF, rate limiting, logout', async (t) => {
  const r = await rig(t);
  let res = await r.req('GET', '/api/v1/auth');
  t.same(res.json(), { passwordSet: false, loggedIn: false, csrf: null, publicStatus: false });
  t.equal(res.headers['strict-transport-security'], 'max-age=31536000', 'HSTS on HTTPS');
  t.equal(
    (await r.req('GET', '/api/v1/auth', undefined, { app: 'http' })).headers['strict-transport-security'],
    undefined,
    'no HSTS on HTTP',
  );

  t.equal((await r.req('GET', '/api/v1/status')).statusCode, 401, 'status is private by default');
  t.equal(
    (await r.req('POST', '/api/v1/auth/login', { password: 'whatever1' })).statusCode,
    409,
    'no password yet',
  );
  res = await r.req('POST', '/api/v1/auth/setup', { password: 'short' });
  t.equal(res.statusCode, 422);
  t.equal(res.json().error, 'AUTH_ERR_WEAK_PASSWORD');
  res = await r.req(
    'POST',
    '/api/v1/auth/setup',
    { password: 'correct horse' },
    { headers: { origin: 'https://evil.example' } },
  );
  t.equal(res.statusCode, 403, 'cross-origin setup refused');
  res = await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' });
  t.equal(res.statusCode, 200);
  const set = r.login(res);
  t.match(set, /HttpOnly/);
  t.match(set, /SameSite=Strict/);
  t.match(set, /Secure/);
  t.equal(
    (await r.req('POST', '/api/v1/auth/setup', { password: 'another one' }, { noAuth: true })).statusCode,
    409,
    'only once',
  );
  const file = JSON.parse(
    (await import('node:fs')).readFileSync(join(r.stateDir, 'manager-auth.json'), 'utf8'),
  );
  t.equal(file.algorithm, 'scrypt');
  t.notMatch(JSON.stringify(file), /correct horse/);
  t.equal((await import('node:fs')).statSync(join(r.stateDir, 'manager-auth.json')).mode & 0o777, 0o600);

  t.equal((await r.req('GET', '/api/v1/status')).statusCode, 200);
  t.equal((await r.req('GET', '/api/v1/status')).json().name, 'qperiph-abcd');
  // CSRF on every state change
  res = await r.req(
    'PUT',
    '/api/v1/settings',
    { publicStatus: true },
    { headers: { 'x-csrf-token': 'wrong' } },
  );
  t.equal(res.statusCode, 403);
  t.equal(res.json().error, 'CSRF');
  t.equal(r.state.get().settings.publicStatus, false, 'unchanged');

  // HTTP login: cookie without Secure
  res = await r.req(
    'POST',
    '/api/v1/auth/login',
    { password: 'correct horse' },
    { app: 'http', noAuth: true },
  );
  t.equal(res.statusCode, 200);
  t.notMatch(String(res.headers['set-cookie']), /Secure/);

  // rate limit: 5 failures per minute per client
  for (let i = 0; i < 5; i++) {
    t.equal(
      (
        await r.req(
          'POST',
          '/api/v1/auth/login',
          { password: 'nope nope' },
          { noAuth: true, ip: '127.0.3.66' },
        )
      ).statusCode,
      401,
    );
  }
  res = await r.req(
    'POST',
    '/api/v1/auth/login',
    { password: 'correct horse' },
    { noAuth: true, ip: '127.0.3.66' },
  );
  t.equal(res.statusCode, 429, 'even the right password waits');
  t.ok(Number(res.headers['retry-after']) > 0);
  t.equal(
    (
      await r.req(
        'POST',
        '/api/v1/auth/login',
        { password: 'correct horse' },
        { noAuth: true, ip: '127.0.3.67' },
      )
    ).statusCode,
    200,
    'other clients unaffected',
  );
  r.clock.advance(61_000);
  t.equal(
    (
      await r.req(
        'POST',
        '/api/v1/auth/login',
        { password: 'correct horse' },
        { noAuth: true, ip: '127.0.3.66' },
      )
    ).statusCode,
    200,
    'after the window',
  );

  // change password ends other sessions
  res = await r.req('POST', '/api/v1/auth/password', { current: 'wrong wrong', next: 'new password 1' });
  t.equal(res.statusCode, 403);
  res = await r.req('POST', '/api/v1/auth/password', { current: 'correct horse', next: 'new password 1' });
  t.equal(res.statusCode, 200);
  r.login(res);

  // logout
  t.equal((await r.req('POST', '/api/v1/auth/logout', {})).statusCode, 200);
  t.equal((await r.req('GET', '/api/v1/status')).statusCode, 401);
  // idle sessions expire
  r.login(await r.req('POST', '/api/v1/auth/login', { password: 'new password 1' }, { noAuth: true }));
  r.clock.advance(3_600_001);
  t.equal((await r.req('GET', '/api/v1/settings')).statusCode, 401);
});

t.test('every mutating route needs a session; public status is a setting; redirect-only HTTP', async (t) => {
  const r = await rig(t);
  const mutating: Array<[string, string, unknown]> = [
    ['PUT', '/api/v1/settings', { publicStatus: true }],
    ['PUT', '/api/v1/certificate', { pem: 'x' }],
    ['DELETE', '/api/v1/certificate', undefined],
    ['POST', '/api/v1/certificate/csr', {}],
    ['POST', '/api/v1/cores/trust', { fingerprint256: FP(1) }],
    ['POST', '/api/v1/identify', { seconds: 5 }],
    ['POST', '/api/v1/reboot', {}],
    ['POST', '/api/v1/factory-reset', { confirm: 'factory-reset' }],
    ['PUT', '/api/v1/network', { hostname: 'x', lanA: { mode: 'dhcp' } }],
    ['PUT', '/api/v1/dot1x', { enabled: false, method: 'eap-tls' }],
    ['POST', '/api/v1/auth/password', { current: 'a', next: 'b' }],
    ['POST', '/api/v1/firmware/bundle', undefined],
  ];
  for (const [m, u, b] of mutating) t.equal((await r.req(m, u, b)).statusCode, 401, `${m} ${u}`);
  t.equal((await r.req('GET', '/cgi-bin/id_mode?mode=on')).statusCode, 401);
  t.same(r.calls, [], 'no hook ran');

  r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
  t.equal((await r.req('PUT', '/api/v1/settings', { publicStatus: true })).statusCode, 200);
  r.reset();
  t.equal((await r.req('GET', '/api/v1/status')).statusCode, 200, 'public now');
  t.equal((await r.req('GET', '/cgi-bin/status_xml')).statusCode, 200);
  t.equal((await r.req('GET', '/api/v1/settings')).statusCode, 401, 'settings still private');
  t.equal((await r.req('PUT', '/api/v1/settings', { publicStatus: false })).statusCode, 401);

  r.login(await r.req('POST', '/api/v1/auth/login', { password: 'correct horse' }));
  t.equal((await r.req('PUT', '/api/v1/settings', { httpRedirectOnly: true })).statusCode, 200);
  const res = await r.req('GET', '/api/v1/status?x=1', undefined, {
    app: 'http',
    headers: { host: '127.0.3.1:8080' },
  });
  t.equal(res.statusCode, 301);
  t.equal(res.headers['location'], 'https://127.0.3.1:0/api/v1/status?x=1');
  t.equal((await r.req('GET', '/', undefined, { app: 'http' })).statusCode, 301);
  t.equal((await r.req('GET', '/')).statusCode, 200, 'HTTPS unaffected');
  t.equal((await r.req('PUT', '/api/v1/settings', { httpRedirectOnly: 'yes' })).statusCode, 400, 'schema');
  t.equal(
    (await r.req('PUT', '/api/v1/settings', { httpRedirectOnly: false, extra: 1 })).statusCode,
    400,
    'unknown field refused',
  );
  t.equal(r.state.get().settings.httpRedirectOnly, true, 'unchanged by refused requests');
});

t.test('bad input: 4xx with a reason, nothing changed', async (t) => {
  const r = await rig(t);
  r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
  let res = await r.req('PUT', '/api/v1/settings', undefined, {
    raw: 'x'.repeat(300_000),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(res.statusCode, 413, 'oversized body');
  res = await r.req('PUT', '/api/v1/settings', undefined, {
    raw: 'publicStatus=true',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(res.statusCode, 415, 'wrong content type');
  res = await r.req('PUT', '/api/v1/settings', undefined, {
    raw: '{"publicStatus":',
    headers: { 'content-type': 'application/json' },
  });
  t.equal(res.statusCode, 400, 'broken JSON');
  t.equal(r.state.get().settings.publicStatus, false);
  for (const p of [
    '/ui/..%2F..%2Fpackage.json',
    '/ui/../service.ts',
    '/ui/%2e%2e%2fservice.ts',
    '/ui/app.js%00.css',
  ]) {
    res = await r.req('GET', p);
    t.equal(res.statusCode, 404, `path traversal ${p}`);
  }
  res = await r.req('GET', '/ui/app.js');
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /javascript/);
  t.match(res.headers['content-security-policy'], /default-src 'self'/);
  // certificate: invalid PEM, other key, expired
  const before = (await r.req('GET', '/api/v1/certificate')).json();
  res = await r.req('PUT', '/api/v1/certificate', { pem: 'not a certificate' });
  t.equal(res.statusCode, 422);
  t.equal(res.json().error, 'PKI_ERR_BAD_PEM');
  t.ok(res.json().message.length > 5);
  const now = r.clock.wallMs();
  const ca = await createAuthority('Test CA', new Date(now - DAY), new Date(now + 100 * DAY));
  const { generateKeyPem } = await import('../../../firmware/pki/index.js');
  const otherKey = await issueCertificate(ca, {
    subjectKeyPem: await generateKeyPem(),
    commonName: 'x',
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + DAY),
  });
  res = await r.req('PUT', '/api/v1/certificate', { pem: otherKey });
  t.equal(res.json().error, 'PKI_ERR_KEY_MISMATCH');
  const expired = await issueCertificate(ca, {
    subjectKeyPem: r.mgr.identity().key,
    commonName: 'x',
    notBefore: new Date(now - 10 * DAY),
    notAfter: new Date(now - DAY),
  });
  res = await r.req('PUT', '/api/v1/certificate', { pem: expired });
  t.equal(res.statusCode, 422);
  t.equal(res.json().error, 'PKI_ERR_EXPIRED');
  t.same((await r.req('GET', '/api/v1/certificate')).json(), before, 'certificate unchanged');
  // network validation
  res = await r.req('PUT', '/api/v1/network', {
    hostname: 'bad_name!',
    lanA: { mode: 'static', address: '10.0.0.300', prefixLength: 40 },
  });
  t.equal(res.statusCode, 422);
  t.match(res.json().message, /\/hostname/);
  t.match(res.json().message, /\/lanA\/address/);
  t.equal(r.net.files.size, 0, 'nothing written');
  // unknown Core
  res = await r.req('POST', '/api/v1/cores/trust', { fingerprint256: FP(9) });
  t.equal(res.statusCode, 404);
  res = await r.req('POST', '/api/v1/cores/trust', { fingerprint256: 'nope' });
  t.equal(res.statusCode, 400);
  res = await r.req('POST', '/api/v1/factory-reset', { confirm: 'yes' });
  t.equal(res.statusCode, 400, 'factory reset needs the confirmation word');
  t.equal(r.calls.length, 0);
});

t.test(
  'API: certificate install + CSR, Cores, identify, events, firmware, reboot, factory reset, OpenAPI',
  async (t) => {
    const r = await rig(t);
    r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
    let res = await r.req('POST', '/api/v1/certificate/csr', {
      C: 'US',
      O: 'Bench',
      CN: 'qperiph-abcd',
      ips: ['127.0.3.1'],
    });
    t.equal(res.statusCode, 200);
    t.match(res.json().csr, /BEGIN CERTIFICATE REQUEST/);
    const now = r.clock.wallMs();
    const ca = await createAuthority('Test CA', new Date(now - DAY), new Date(now + 100 * DAY));
    const leaf = await issueCertificate(ca, {
      subjectKeyPem: r.mgr.identity().key,
      commonName: 'qperiph-abcd',
      ips: ['127.0.3.1'],
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 30 * DAY),
    });
    res = await r.req('PUT', '/api/v1/certificate', { pem: leaf + ca.certPem });
    t.equal(res.statusCode, 200);
    t.equal(res.json().kind, 'installed');
    t.match(r.mgr.identity().cert, /BEGIN CERTIFICATE/);
    t.equal(r.mgr.ctx.identity.info().kind, 'installed');
    res = await r.req('DELETE', '/api/v1/certificate');
    t.equal(res.json().kind, 'self-signed');

    res = await r.req('POST', '/api/v1/cores/trust', { fingerprint256: FP(1) });
    t.equal(res.statusCode, 200);
    t.equal(res.json().trusted[0].fingerprint256, FP(1));
    t.equal(r.state.get().pendingCores.length, 0);
    t.equal((await r.req('GET', '/api/v1/status')).json().secureComm, 'enabled');

    res = await r.req('POST', '/api/v1/identify', { seconds: 10 });
    t.same(res.json(), { identify: true, seconds: 10 });
    t.equal((await r.req('GET', '/api/v1/status')).json().identify, true);
    r.clock.advance(10_000);
    t.equal((await r.req('GET', '/api/v1/status')).json().identify, false, 'stops by itself');
    t.same(r.calls, ['identify true 10', 'identify false 0']);

    let ev = (await r.req('GET', '/api/v1/events?pageSize=2')).json();
    t.ok(ev.total >= 3);
    t.equal(ev.entries.length, 2);
    t.equal(ev.entries[0].event, 'core_trust', 'newest first');
    ev = (await r.req('GET', '/api/v1/events?level=warn')).json();
    t.equal(ev.total, 0);
    t.equal((await r.req('GET', '/api/v1/events?level=loud')).statusCode, 400);

    res = await r.req('GET', '/api/v1/firmware');
    t.equal(res.json().uploadAvailable, false);
    res = await r.req('POST', '/api/v1/firmware/bundle', undefined, {
      raw: 'bytes',
      headers: { 'content-type': 'application/octet-stream' },
    });
    t.equal(res.statusCode, 501);

    const doc = (await r.req('GET', '/api/v1/openapi.json', undefined, { noAuth: true })).json();
    t.equal(doc.openapi, '3.0.3');
    for (const p of [
      '/api/v1/status',
      '/api/v1/auth/login',
      '/api/v1/certificate',
      '/api/v1/identify',
      '/api/v1/network',
      '/api/v1/events',
    ])
      t.ok(doc.paths[p], `OpenAPI has ${p}`);
    t.ok(doc.paths['/api/v1/identify'].post.requestBody, 'body schema documented');
    t.notOk(doc.paths['/cgi-bin/status_xml'], 'legacy endpoints not in the API document');

    t.equal((await r.req('POST', '/api/v1/reboot', {})).statusCode, 202);
    await new Promise((resolve) => setImmediate(resolve));
    t.ok(r.calls.includes('reboot'));
    res = await r.req('POST', '/api/v1/factory-reset', { confirm: 'factory-reset' });
    t.equal(res.statusCode, 202);
    await new Promise((resolve) => setImmediate(resolve));
    t.ok(r.calls.includes('factory-reset'));
    t.equal(r.state.get().trustedCores.length, 0);
    t.equal(r.state.get().name, 'qperiph-abcd', 'name kept');
    t.equal(
      (await r.req('GET', '/api/v1/auth', undefined, { noAuth: true })).json().passwordSet,
      false,
      'password forgotten',
    );
    t.equal((await r.req('GET', '/api/v1/status')).statusCode, 401, 'sessions ended');
  },
);

t.test('bundle upload hook gets the raw request after auth + CSRF', async (t) => {
  let got = '';
  const r = await rig(t, {
    bundleUpload: (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got = Buffer.concat(chunks).toString();
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end('{"accepted":true}');
      });
    },
  });
  r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
  const res = await r.req('POST', '/api/v1/firmware/bundle', undefined, {
    raw: 'BUNDLE-BYTES',
    headers: { 'content-type': 'application/octet-stream' },
  });
  t.equal(res.statusCode, 202);
  t.equal(got, 'BUNDLE-BYTES');
  t.equal((await r.req('GET', '/api/v1/firmware')).json().uploadAvailable, true);
});

t.test('legacy /cgi-bin endpoints', async (t) => {
  const r = await rig(t);
  r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
  r.reset();
  const basic = { authorization: 'Basic ' + Buffer.from('admin:correct horse').toString('base64') };
  let res = await r.req('GET', '/cgi-bin/status_xml', undefined, { headers: basic });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/xml/);
  t.match(res.body, /<device_name>qperiph-abcd<\/device_name>/);
  t.match(res.body, /<id_mode>off<\/id_mode>/);
  t.match(res.body, /<address>127\.0\.3\.1<\/address>/);
  t.equal(
    (
      await r.req('GET', '/cgi-bin/status_xml', undefined, {
        headers: { authorization: 'Basic ' + Buffer.from('admin:devicelock').toString('base64') },
      })
    ).statusCode,
    401,
  );
  res = await r.req('GET', '/cgi-bin/id_mode?mode=on', undefined, { headers: basic });
  t.equal(res.statusCode, 200);
  t.match(
    (await r.req('GET', '/cgi-bin/status_xml', undefined, { headers: basic })).body,
    /<id_mode>on<\/id_mode>/,
  );
  t.equal((await r.req('GET', '/cgi-bin/id_mode?mode=blink', undefined, { headers: basic })).statusCode, 400);
  await r.req('GET', '/cgi-bin/id_mode?mode=off', undefined, { headers: basic });
  t.same(r.calls, ['identify true 600', 'identify false 600']);

  const post = (xml: string, type = 'text/xml') =>
    r.req('POST', '/cgi-bin/network_configuration_xml', undefined, {
      raw: xml,
      headers: { ...basic, 'content-type': type },
    });
  const bomb =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><network_configuration><hostname>&lol2;</hostname></network_configuration>';
  res = await post(bomb);
  t.equal(res.statusCode, 400);
  t.equal(res.json().error, 'LEGACY_ERR_ENTITY');
  res = await post('<network_configuration><hostname>&ext;</hostname></network_configuration>');
  t.equal(res.json().error, 'LEGACY_ERR_ENTITY');
  res = await post(
    '<network_configuration>' + '<a>'.repeat(20) + '</a>'.repeat(20) + '</network_configuration>',
  );
  t.equal(res.json().error, 'LEGACY_ERR_BAD_XML');
  res = await post(
    '<network_configuration><hostname>x</hostname>' + ' '.repeat(20_000) + '</network_configuration>',
  );
  t.equal(res.statusCode, 413);
  res = await post(
    '<network_configuration><hostname>x</hostname></network_configuration>',
    'application/json',
  );
  t.equal(res.statusCode, 400);
  res = await post(
    '<network_configuration><interface><name>LAN C</name><mode>auto</mode></interface></network_configuration>',
  );
  t.equal(res.json().error, 'LEGACY_ERR_BAD_FIELD');
  res = await post('<network_configuration><hostname>bad name</hostname></network_configuration>');
  t.equal(res.statusCode, 422);
  t.equal(r.net.files.size, 0, 'nothing written for any refused body');

  res = await post(
    '<?xml version="1.0"?><network_configuration><hostname>bench-7</hostname><enable_dns/><primary_dns>10.0.0.2</primary_dns><secondary_dns/><interface><name>LAN A</name><mode>static</mode><address>10.0.0.7</address><netmask>255.255.255.0</netmask><default_route>10.0.0.1</default_route></interface></network_configuration>',
  );
  t.equal(res.statusCode, 200);
  const ifaces = r.net.files.get('/fake/etc/network/interfaces.d/qperiph')!.content;
  t.match(
    ifaces,
    /iface eth0 inet static\n {4}address 10\.0\.0\.7\/24\n {4}gateway 10\.0\.0\.1\n {4}dns-nameservers 10\.0\.0\.2/,
  );
  t.equal(r.net.files.get('/fake/etc/hostname')!.content, 'bench-7\n');
});

/** Wait (real time) until the connectivity check after a clock advance has finished. */
async function settled(r: { req: (m: string, u: string) => Promise<Res> }): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await r.req('GET', '/api/v1/network')).json().pending === null) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('the connectivity check did not finish');
}

t.test('network change reverts by itself when connectivity is lost', async (t) => {
  const r = await rig(t);
  r.login(await r.req('POST', '/api/v1/auth/setup', { password: 'correct horse' }));
  let res = await r.req('PUT', '/api/v1/network', {
    hostname: 'bench-1',
    dns: [],
    lanA: { mode: 'static', address: '10.0.0.7', prefixLength: 24, gateway: '10.0.0.1' },
  });
  t.equal(res.statusCode, 200);
  t.ok(res.json().pending);
  res = await r.req('PUT', '/api/v1/network', { hostname: 'bench-2', lanA: { mode: 'dhcp' } });
  t.equal(res.statusCode, 409, 'one change at a time');
  r.clock.advance(30_000);
  await settled(r);
  t.equal((await r.req('GET', '/api/v1/network')).json().pending, null, 'confirmed');
  t.equal((await r.req('GET', '/api/v1/network')).json().network.hostname, 'bench-1');

  r.net.online = false;
  res = await r.req('PUT', '/api/v1/network', {
    hostname: 'bench-2',
    lanA: { mode: 'static', address: '10.9.9.9', prefixLength: 8 },
  });
  t.equal(res.statusCode, 200);
  t.match(r.net.files.get('/fake/etc/network/interfaces.d/qperiph')!.content, /10\.9\.9\.9/);
  const applied = r.net.applied;
  r.clock.advance(30_000);
  await settled(r);
  t.match(r.net.files.get('/fake/etc/network/interfaces.d/qperiph')!.content, /10\.0\.0\.7/, 'old file back');
  t.equal(r.net.files.get('/fake/etc/hostname')!.content, 'bench-1\n');
  t.equal(r.net.applied, applied + 1, 'applied again');
  t.equal((await r.req('GET', '/api/v1/network')).json().network.hostname, 'bench-1');
  const ev = (await r.req('GET', '/api/v1/events?level=warn')).json();
  t.ok(ev.entries.some((e: { event: string }) => e.event === 'netconfig_reverted'));

  // 802.1X: secrets are written but never read back
  r.net.online = true;
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  res = await r.req('PUT', '/api/v1/dot1x', {
    enabled: true,
    method: 'peap-mschapv2',
    identity: 'bob',
    password: 'secret2',
    caCert: ca,
  });
  t.equal(res.statusCode, 200);
  t.equal(res.json().dot1x.password, '********');
  t.match(r.net.files.get('/fake/etc/wpa_supplicant/qperiph-eth0.conf')!.content, /password="secret2"/);
  t.equal(r.net.files.get('/fake/etc/wpa_supplicant/qperiph-eth0.conf')!.mode, 0o600);
  r.clock.advance(30_000);
  await settled(r);
  res = await r.req('PUT', '/api/v1/dot1x', {
    enabled: true,
    method: 'peap-mschapv2',
    identity: 'bob"\nnetwork={',
    password: 'x',
    caCert: ca,
  });
  t.equal(res.statusCode, 422, 'quote injection refused');
});

t.test('options are checked once', async (t) => {
  const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'));
  const base = {
    host: '127.0.3.1',
    board,
    state: null as never,
    stateDir: '/nonexistent',
    logger: createMemoryLogger(),
    clock: new FakeClock(),
  };
  await t.rejects(PeripheralManager.create({ ...base, httpPort: 70000, httpsPort: 443 }), {
    code: 'MANAGER_ERR_OPTIONS',
    message: /httpPort/,
  });
  await t.rejects(PeripheralManager.create({ ...base, httpPort: 80, httpsPort: 80 }), {
    code: 'MANAGER_ERR_OPTIONS',
    message: /differ/,
  });
  await t.rejects(PeripheralManager.create({ ...base, httpPort: 80, httpsPort: 443, liveIntervalMs: 500 }), {
    message: /10 updates/,
  });
  await t.rejects(
    PeripheralManager.create({ ...base, httpPort: 80, httpsPort: 443, tlsCiphers: ['AES128-SHA'] }),
    { message: /tlsCiphers/ },
  );
});

t.test('renderers: NetworkManager keyfile and EAP-TLS wpa_supplicant', async (t) => {
  const { renderNetworkFiles } = await import('../../../firmware/netconfig/index.js');
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const key = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';
  const files = renderNetworkFiles({
    root: '/r',
    backend: 'networkmanager',
    interfaces: { lanA: 'end0', lanB: 'end1' },
    network: {
      hostname: 'dev-9',
      dns: ['10.0.0.2', '10.0.0.3'],
      lanA: { mode: 'static', address: '10.0.0.9', prefixLength: 24, gateway: '10.0.0.1' },
      lanB: { mode: 'dhcp' },
    },
    dot1x: {
      enabled: true,
      method: 'eap-tls',
      identity: 'dev-9',
      caCert: ca,
      clientCert: ca,
      clientKey: key,
    },
  });
  const byPath = new Map(files.map((f) => [f.path, f]));
  const a = byPath.get('/r/etc/NetworkManager/system-connections/qperiph-end0.nmconnection')!;
  t.match(a.content, /\[802-1x\]\neap=tls;\nidentity=dev-9\nca-cert=\/r\/etc\/qperiph\/8021x\/ca\.pem/);
  t.match(a.content, /method=manual\naddress1=10\.0\.0\.9\/24,10\.0\.0\.1\ndns=10\.0\.0\.2;10\.0\.0\.3;/);
  t.equal(a.mode, 0o600);
  const b = byPath.get('/r/etc/NetworkManager/system-connections/qperiph-end1.nmconnection')!;
  t.match(b.content, /method=auto/);
  t.notMatch(b.content, /802-1x/, '802.1X only on LAN A');
  t.equal(byPath.get('/r/etc/qperiph/8021x/client-key.pem')!.mode, 0o600);
  t.notOk(
    [...byPath.keys()].some((p) => p.includes('wpa_supplicant')),
    'no wpa_supplicant files for NM',
  );
});

t.test('event log persists across restarts, pages newest first, filters by level', async (t) => {
  const { EventLog } = await import('../../../firmware/peripheral-manager/event-log.js');
  const dir = await mkdtemp(join(tmpdir(), 'qp-ev-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const clock = new FakeClock();
  const log = await EventLog.open(dir, clock, 10);
  for (let i = 0; i < 25; i++) await log.add(i % 5 === 0 ? 'error' : 'info', 'e', `event ${i}`);
  const again = await EventLog.open(dir, clock, 10);
  const p0 = again.page(0, 4);
  t.equal(p0.entries[0]!.message, 'event 24');
  t.equal(p0.total, 10, 'keeps the newest `max` entries');
  t.equal(again.page(1, 4).entries[0]!.message, 'event 20');
  t.same(
    again.page(0, 10, 'error').entries.map((e) => e.message),
    ['event 20', 'event 15'],
  );
  t.equal(again.page(0, 10, 'warn').total, 2, 'warn includes errors');
  await again.add('warn', 'w', 'after restart');
  t.equal(again.page(0, 1).entries[0]!.seq, 26, 'sequence continues');
});
