/**
 * The device-side Core API: the pure access decision and config parser, then
 * the routes mounted on a real Peripheral Manager (HTTPS with client
 * certificates on 127.0.2.110, ephemeral ports): pinned accepted, unpinned and
 * certificate-less refused while secure communication is on, anyone accepted
 * while it is off; bad JSON, oversize bodies, bad fetch URLs; bundle push;
 * plain HTTP refused; the admin API still needs its session.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createSystemClock } from '../../../firmware/clock/clock.js';
import { loadBoardConfig } from '../../../firmware/config/board-config.js';
import { StateStore } from '../../../firmware/config/state-store.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { FakeNetBinding, NetconfigService } from '../../../firmware/netconfig/index.js';
import { findProjectRoot } from '../../../firmware/paths.js';
import { PeripheralManager } from '../../../firmware/peripheral-manager/index.js';
import { DirectoryBootSelector, initDirectorySlots } from '../../../firmware/update/boot-selector.js';
import {
  checkFetchUrl,
  createCoreApiHandler,
  decideCoreAccess,
  parseCoreConfig,
  type CoreConfig,
} from '../../../firmware/update/core-api.js';
import { createCertificate, createPki, generateSigningKey } from '../../../firmware/update/pki.js';
import { UpdateService } from '../../../firmware/update/service.js';
import { loadTrustStore } from '../../../firmware/update/trust.js';
import { makeBundle, provision } from '../../fixtures/update/helpers.js';

const HOST = '127.0.2.110';
const FP_A = 'AA:' + Array.from({ length: 31 }, () => '01').join(':');

t.test('access decision: pin when secure communication is on', async (t) => {
  t.match(decideCoreAccess({ tls: false, fingerprint: FP_A, trustedCores: [] }), {
    ok: false,
    code: 'CORE_ERR_TLS_REQUIRED',
  });
  t.match(decideCoreAccess({ tls: true, fingerprint: null, trustedCores: [] }), { ok: true, pinned: false });
  t.match(decideCoreAccess({ tls: true, fingerprint: FP_A, trustedCores: [] }), {
    ok: true,
    fingerprint: FP_A,
    pinned: false,
  });
  t.match(decideCoreAccess({ tls: true, fingerprint: FP_A.toLowerCase(), trustedCores: [FP_A] }), {
    ok: true,
    pinned: true,
  });
  t.match(decideCoreAccess({ tls: true, fingerprint: null, trustedCores: [FP_A] }), {
    ok: false,
    status: 403,
    code: 'CORE_ERR_NOT_PINNED',
  });
  t.match(decideCoreAccess({ tls: true, fingerprint: 'BB' + FP_A.slice(2), trustedCores: [FP_A] }), {
    ok: false,
    code: 'CORE_ERR_NOT_PINNED',
  });
});

t.test('config parser: design and controls, typed refusals', async (t) => {
  t.strictSame(
    parseCoreConfig({ design: { name: 'Room 1', code: 'abc-1', role: 'primary' }, controls: { gain: -3 } }),
    {
      design: { name: 'Room 1', code: 'abc-1', role: 'primary', primary: true, redundant: false },
      controls: { gain: -3 },
    },
  );
  t.strictSame(parseCoreConfig({ controls: { a: true, b: 'x' } }), { controls: { a: true, b: 'x' } });
  for (const bad of [
    null,
    [],
    {},
    { other: 1 },
    { design: 'x' },
    { design: { name: 'n', code: 'bad code', role: 'primary' } },
    { design: { name: 'n', code: 'c', role: 'pri/mary' } },
    { design: { name: '', code: 'c', role: 'r' } },
    { design: { name: 'n', code: 'c', role: 'r', primary: 'yes' } },
    { controls: {} },
    { controls: { a: null } },
    { controls: { a: Number.NaN } },
    { controls: [1] },
  ]) {
    t.throws(() => parseCoreConfig(bad), { code: 'CORE_ERR_BAD_CONFIG' }, JSON.stringify(bad));
  }
  t.equal(checkFetchUrl('http://127.0.0.1:1/x.qpb'), 'http://127.0.0.1:1/x.qpb');
  for (const bad of [1, '', 'not a url', 'ftp://host/x', 'file:///etc/passwd', 'h'.repeat(3000)])
    t.throws(() => checkFetchUrl(bad), { code: 'CORE_ERR_BAD_URL' });
});

// ---- routes over real TLS ----

const base = await mkdtemp(join(tmpdir(), 'qperiph-core-api-'));
t.teardown(() => rm(base, { recursive: true, force: true }));
const pki = createPki({ alg: 'p256' });
await provision(base, pki, 'dev');
const logger = createMemoryLogger();
const clock = createSystemClock();
const appRoot = join(base, 'app');
await initDirectorySlots(appRoot);
const reboots: string[] = [];
const selector = new DirectoryBootSelector(appRoot, (m) => void reboots.push(m));
const service = new UpdateService({
  stateFile: join(base, 'state', 'update.json'),
  spoolDir: join(base, 'spool'),
  maxBundleBytes: 4 * 1024 * 1024,
  app: { root: appRoot, selector },
  trust: () =>
    loadTrustStore({
      provisionedDir: join(base, 'anchors'),
      channel: 'dev',
      rotatedFile: join(base, 'state', 'rot.json'),
    }),
  rotatedTrustFile: join(base, 'state', 'rot.json'),
  product: 'qperiph',
  board: 'virtual',
  buildTimeMs: Date.UTC(2026, 0, 1),
  clock,
  logger,
  health: () => Promise.resolve(true),
  runningVersion: '1.2.3',
});
await service.start();
const state = await StateStore.open({ dir: join(base, 'state'), logger, clock });
const board = loadBoardConfig(join(findProjectRoot(), 'board-configs', 'virtual.json'), {
  lanAAddress: HOST,
});
const netconfig = await NetconfigService.open({
  binding: new FakeNetBinding(),
  clock,
  logger,
  stateDir: join(base, 'state'),
  root: '/fake',
  backend: 'ifupdown',
  interfaces: { lanA: 'eth0', lanB: null },
  defaults: { hostname: 'qperiph-core', dns: [], lanA: { mode: 'dhcp' }, lanB: null },
});
const applied: CoreConfig[] = [];
const mgr = await PeripheralManager.create({
  httpPort: 0,
  httpsPort: 0,
  host: HOST,
  board,
  state,
  stateDir: join(base, 'state'),
  logger,
  clock,
  netconfig,
  name: 'qperiph-core',
  interfaces: () => ({
    lo: [{ address: HOST, netmask: '255.0.0.0', mac: '00:00:00:00:00:00', internal: true }],
  }),
  hooks: {
    coreApi: createCoreApiHandler({
      service,
      trustedCores: () => state.get().trustedCores.map((c) => c.fingerprint256),
      healthy: () => true,
      applyConfig: async (cfg) => {
        applied.push(cfg);
        if (cfg.controls && 'nope' in cfg.controls)
          throw Object.assign(new Error('unknown control nope'), { code: 'CONTROL_ERR_UNKNOWN_CONTROL' });
        return [
          ...(cfg.design ? ['design'] : []),
          ...Object.keys(cfg.controls ?? {}).map((n) => `control:${n}`),
        ];
      },
      logger,
    }),
  },
});
const ports = await mgr.start();
t.teardown(() => mgr.stop());

function clientCert(cn: string): { cert: string; key: string; fp: string } {
  const k = generateSigningKey('p256');
  const der = createCertificate({
    subject: cn,
    issuerKey: k.privateKey,
    publicKey: k.publicKey,
    notBeforeMs: Date.now() - 86_400_000,
    notAfterMs: Date.now() + 86_400_000,
    ca: false,
    extKeyUsage: ['1.3.6.1.5.5.7.3.2'],
  });
  const x = new X509Certificate(der);
  return {
    cert: x.toString(),
    key: k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    fp: x.fingerprint256,
  };
}
const coreA = clientCert('core A');
const coreB = clientCert('core B');

interface Res {
  status: number;
  body: Record<string, unknown>;
}
function call(
  method: string,
  path: string,
  o: {
    client?: { cert: string; key: string };
    body?: Buffer | string;
    plain?: boolean;
    headers?: Record<string, string>;
  } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const opts = {
      host: HOST,
      port: o.plain ? ports.httpPort : ports.httpsPort,
      path,
      method,
      agent: false as const,
      headers: o.headers ?? {},
      ...(o.plain ? {} : { rejectUnauthorized: false, ...(o.client ?? {}) }),
    };
    const req = (o.plain ? httpRequest : httpsRequest)(opts, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          body = { text };
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    if (o.body !== undefined) req.end(o.body);
    else req.end();
  });
}

t.test('secure communication off: any client, with or without a certificate', async (t) => {
  const none = await call('GET', '/api/v1/core/firmware');
  t.equal(none.status, 200);
  t.match(none.body, {
    version: '1.2.3',
    bootedSlot: 'a',
    primarySlot: 'a',
    phase: 'idle',
    securityVersion: 0,
    last: null,
    healthy: true,
  });
  const withCert = await call('GET', '/api/v1/core/firmware', { client: coreB });
  t.equal(withCert.status, 200);
  t.ok(
    logger.records.some((r) => r.event === 'core_api_client' && r['fingerprint'] === coreB.fp),
    'a client with a certificate is logged',
  );
});

t.test('requests: bad JSON, oversize, bad URL, config, unknown path, method', async (t) => {
  const json = { 'content-type': 'application/json' };
  t.match(await call('PUT', '/api/v1/core/config', { body: '{"design":', headers: json }), {
    status: 400,
    body: { code: 'CORE_ERR_BAD_JSON' },
  });
  t.match(
    await call('PUT', '/api/v1/core/config', {
      body: JSON.stringify({ controls: { x: 'y'.repeat(70 * 1024) } }),
      headers: json,
    }),
    { status: 413, body: { code: 'CORE_ERR_TOO_LARGE' } },
  );
  const before = applied.length;
  t.match(await call('PUT', '/api/v1/core/config', { body: '{"design":{"name":"n"}}', headers: json }), {
    status: 400,
    body: { code: 'CORE_ERR_BAD_CONFIG' },
  });
  t.equal(applied.length, before, 'a refused config applies nothing');
  t.match(
    await call('PUT', '/api/v1/core/config', {
      body: JSON.stringify({ design: { name: 'Room', code: 'r1', role: 'primary' }, controls: { gain: 1 } }),
      headers: json,
    }),
    { status: 200, body: { applied: ['design', 'control:gain'] } },
  );
  t.match(applied.at(-1), { design: { code: 'r1', primary: true } });
  t.match(await call('PUT', '/api/v1/core/config', { body: '{"controls":{"nope":1}}', headers: json }), {
    status: 404,
    body: { code: 'CORE_ERR_UNKNOWN_CONTROL' },
  });
  t.match(await call('POST', '/api/v1/core/firmware/fetch', { body: '{"url":"ftp://x/y"}', headers: json }), {
    status: 400,
    body: { code: 'CORE_ERR_BAD_URL' },
  });
  t.match(await call('POST', '/api/v1/core/firmware/fetch', { body: '{}', headers: json }), {
    status: 400,
    body: { code: 'CORE_ERR_BAD_URL' },
  });
  t.match(await call('POST', '/api/v1/core/firmware/fetch', { body: 'nope', headers: json }), {
    status: 400,
    body: { code: 'CORE_ERR_BAD_JSON' },
  });
  t.match(await call('GET', '/api/v1/core/nothing'), { status: 404, body: { code: 'CORE_ERR_NOT_FOUND' } });
  t.match(await call('DELETE', '/api/v1/core/firmware'), { status: 405, body: { code: 'CORE_ERR_METHOD' } });
  t.match(await call('GET', '/api/v1/core/config'), { status: 405 });
});

t.test('fetch from an unreachable URL: accepted, then recorded as failed', async (t) => {
  const r = await call('POST', '/api/v1/core/firmware/fetch', {
    body: JSON.stringify({ url: `http://${HOST}:9/bundle.qpb` }),
    headers: { 'content-type': 'application/json' },
  });
  t.match(r, { status: 202, body: { result: 'accepted' } });
  let last: Record<string, unknown> | null = null;
  for (let i = 0; i < 100 && !last; i++) {
    await new Promise((res) => setTimeout(res, 50));
    last = (await call('GET', '/api/v1/core/firmware')).body['last'] as Record<string, unknown> | null;
  }
  t.match(last, { result: 'failed', code: 'UPDATE_ERR_DOWNLOAD' });
});

t.test('plain HTTP is refused; the admin API still needs a session', async (t) => {
  t.match(await call('GET', '/api/v1/core/firmware', { plain: true }), {
    status: 403,
    body: { code: 'CORE_ERR_TLS_REQUIRED' },
  });
  t.match(await call('POST', '/api/v1/core/firmware', { plain: true, body: 'x' }), { status: 403 });
  t.equal((await call('POST', '/api/v1/firmware/bundle', { client: coreA, body: 'x' })).status, 401);
});

t.test('secure communication on: only the pinned Core', async (t) => {
  await state.update((s) => {
    s.trustedCores.push({ name: 'core A', fingerprint256: coreA.fp, addedAt: new Date().toISOString() });
  });
  t.match(await call('GET', '/api/v1/core/firmware', { client: coreA }), {
    status: 200,
    body: { phase: 'idle' },
  });
  t.match(await call('GET', '/api/v1/core/firmware', { client: coreB }), {
    status: 403,
    body: { code: 'CORE_ERR_NOT_PINNED' },
  });
  t.match(await call('GET', '/api/v1/core/firmware'), { status: 403, body: { code: 'CORE_ERR_NOT_PINNED' } });
  const before = applied.length;
  t.match(
    await call('PUT', '/api/v1/core/config', {
      client: coreB,
      body: '{"controls":{"gain":1}}',
      headers: { 'content-type': 'application/json' },
    }),
    { status: 403 },
  );
  t.equal(applied.length, before, 'nothing applied for an unpinned client');

  // Push a signed app bundle as the pinned Core: the trial is armed and the restart requested.
  const bundle = join(base, 'v2.qpb');
  await makeBundle(bundle, pki, { version: '2.0.0', securityVersion: 2 });
  const bytes = await readFile(bundle);
  t.match(
    await call('POST', '/api/v1/core/firmware', {
      client: coreB,
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    }),
    { status: 403 },
  );
  t.equal(reboots.length, 0);
  const pushed = await call('POST', '/api/v1/core/firmware', {
    client: coreA,
    body: bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
  t.match(pushed, { status: 202, body: { result: 'rebooting' } });
  t.strictSame(reboots, ['trial']);
  t.equal((await readFile(join(appRoot, 'tryboot'), 'utf8')).trim(), 'b');
  t.equal(
    createHash('sha256')
      .update(await readFile(join(appRoot, 'b', 'VERSION')))
      .digest('hex'),
    createHash('sha256').update('2.0.0\n').digest('hex'),
  );
  const st = await call('GET', '/api/v1/core/firmware', { client: coreA });
  t.match(st.body, { phase: 'rebooting', bootedSlot: 'a', primarySlot: 'a' });
  t.match(await service.slotStatus(), {
    version: '1.2.3',
    phase: 'rebooting',
    trialSlot: 'b',
    slots: { a: { version: null }, b: { version: null } },
  });
  // A second push while the job waits for its trial boot: busy.
  t.match(
    await call('POST', '/api/v1/core/firmware', {
      client: coreA,
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    }),
    { status: 409, body: { code: 'UPDATE_ERR_BUSY' } },
  );
});
