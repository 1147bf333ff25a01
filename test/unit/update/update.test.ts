import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import tap from 'tap';
const t = tap;
import { FakeClock } from '../../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../../firmware/log/logger.js';
import { checkSymlinkTarget, decodeAppToc, encodeAppArchive } from '../../../firmware/update/app-archive.js';
import { BundleFile, readBundleHead, verifyBundleFile } from '../../../firmware/update/bundle.js';
import {
  decodeHeader,
  decodeManifest,
  encodeHeader,
  HEADER_SIZE,
  payloadAreaOffset,
} from '../../../firmware/update/bundle-codec.js';
import { createSimDevice } from '../../../firmware/update/device-sim.js';
import { UpdateError } from '../../../firmware/update/errors.js';
import type { Installer, UpdateOutcome } from '../../../firmware/update/installer.js';
import {
  createCertificate,
  createPki,
  derToPem,
  generateSigningKey,
  type TestPki,
} from '../../../firmware/update/pki.js';
import { timeFloor, TrustStore, verifyChain } from '../../../firmware/update/trust.js';
import { appArchive, makeBundle, provision, snapshotSlots } from '../../fixtures/update/helpers.js';

const DAY = 86_400_000;
const tmp = await mkdtemp(join(tmpdir(), 'qperiph-update-unit-'));
t.teardown(() => rm(tmp, { recursive: true, force: true }));
let seq = 0;
const fresh = (): string => join(tmp, `d${seq++}`);

const pki = createPki({ alg: 'ed25519' });
const pkiP256 = createPki({ alg: 'p256' });
const foreign = createPki({ alg: 'ed25519', rootName: 'someone else' });

async function device(
  o: {
    buildTimeMs?: number;
    pki?: TestPki;
    healthy?: boolean;
    clock?: FakeClock;
    channel?: 'dev' | 'release';
    outcomes?: UpdateOutcome[];
  } = {},
) {
  const root = fresh();
  await provision(root, o.pki ?? pki, o.channel ?? 'dev');
  const logger = createMemoryLogger();
  const mk = () =>
    createSimDevice({
      root,
      logger,
      channel: o.channel ?? 'dev',
      healthy: () => Promise.resolve(o.healthy ?? true),
      healthDeadlineMs: 200,
      ...(o.clock ? { clock: o.clock } : {}),
      ...(o.buildTimeMs ? { buildTimeMs: o.buildTimeMs } : {}),
      report: (x) => o.outcomes?.push(x),
    });
  const dev = await mk();
  return { root, appRoot: join(root, 'app'), logger, ...dev, reopen: mk };
}

async function expectRefused(
  t: Pick<typeof tap, 'rejects' | 'equal'>,
  dev: { installer: Installer },
  bundle: string,
  code: string,
) {
  const appRoot = join(dirname(dev.installer.current === undefined ? '' : bundle), 'app');
  const before = await snapshotSlots(appRoot);
  await t.rejects(dev.installer.install(bundle), { code }, `refused with ${code}`);
  t.equal(await snapshotSlots(appRoot), before, `both slots unchanged after ${code}`);
  t.equal(dev.installer.current.job, null, 'no job left behind');
}

t.test('header codec: round trip and typed errors with offsets', async (t) => {
  const h = encodeHeader({ manifestLength: 100, envelopeLength: 50, payloadLength: 4096 });
  t.same(decodeHeader(h), { formatVersion: 1, manifestLength: 100, envelopeLength: 50, payloadLength: 4096 });
  t.equal(payloadAreaOffset(decodeHeader(h)), HEADER_SIZE + 150);
  const bad = Buffer.from(h);
  bad[0] = 0x58;
  t.throws(() => decodeHeader(bad), { code: 'UPDATE_ERR_BAD_MAGIC', offset: 0 });
  const ver = Buffer.from(h);
  ver.writeUInt16BE(2, 8);
  t.throws(() => decodeHeader(ver), { code: 'UPDATE_ERR_BAD_VERSION', offset: 8 });
  t.throws(() => decodeHeader(h.subarray(0, 20)), { code: 'UPDATE_ERR_TRUNCATED' });
  t.throws(
    () =>
      decodeHeader(encodeHeader({ manifestLength: 2 * 1024 * 1024, envelopeLength: 0, payloadLength: 0 })),
    {
      code: 'UPDATE_ERR_OVERSIZED',
      offset: 12,
    },
  );
  t.throws(
    () => decodeHeader(encodeHeader({ manifestLength: 10, envelopeLength: 0, payloadLength: 2 ** 40 })),
    {
      code: 'UPDATE_ERR_OVERSIZED',
      offset: 24,
    },
  );
  t.throws(
    () =>
      decodeHeader(encodeHeader({ manifestLength: 10, envelopeLength: 0, payloadLength: 5000 }), {
        maxPayload: 4096,
      }),
    {
      code: 'UPDATE_ERR_OVERSIZED',
    },
  );
  t.throws(() => decodeManifest(Buffer.from('{"format":"qperiph-bundle"'), 0), {
    code: 'UPDATE_ERR_BAD_MANIFEST',
  });
  t.throws(() => decodeManifest(Buffer.from('{"format":"other"}'), 0), { code: 'UPDATE_ERR_BAD_MANIFEST' });
});

t.test('app archive codec: paths, symlinks, exact length', async (t) => {
  const ok = appArchive('1');
  const toc = decodeAppToc(ok, ok.length);
  t.equal(toc?.entries.length, 4);
  t.equal(decodeAppToc(ok.subarray(0, 10), ok.length), null, 'needs more bytes');
  const bad = (path: string) =>
    encodeAppArchive([{ type: 'file', path, mode: 0o644, data: Buffer.from('x') }]);
  for (const p of ['../evil', '/etc/passwd', 'a/../../b', 'a//b', './a', 'a\\..\\b']) {
    const a = bad(p);
    t.throws(() => decodeAppToc(a, a.length), { code: 'UPDATE_ERR_PATH' }, `refuses '${p}'`);
  }
  t.throws(() => checkSymlinkTarget('x/l', '../../etc', 0), { code: 'UPDATE_ERR_PATH' });
  t.throws(() => checkSymlinkTarget('l', '/etc', 0), { code: 'UPDATE_ERR_PATH' });
  t.doesNotThrow(() => checkSymlinkTarget('x/l', '../y', 0));
  const through = encodeAppArchive([
    { type: 'symlink', path: 'l', mode: 0o777, target: 'sub' },
    { type: 'file', path: 'l/f', mode: 0o644, data: Buffer.from('x') },
  ]);
  t.throws(
    () => decodeAppToc(through, through.length),
    { code: 'UPDATE_ERR_PATH' },
    'no entry below a symlink',
  );
  t.throws(() => decodeAppToc(ok, ok.length + 1), { code: 'UPDATE_ERR_ARCHIVE' }, 'length must match');
});

t.test('chain verification: both algorithms, every link checked', async (t) => {
  const now = Date.now();
  for (const p of [pki, pkiP256]) {
    const store = new TrustStore({ channel: 'dev', anchors: [p.root.cert] });
    t.equal(verifyChain([p.signer.der], store, now).fingerprint256, p.signer.cert.fingerprint256);
    t.ok(verifyChain([p.signer.der, p.root.der], store, now), 'anchor may travel in the chain');
  }
  const store = new TrustStore({ channel: 'dev', anchors: [pki.root.cert] });
  t.throws(() => verifyChain([foreign.signer.der], store, now), { code: 'UPDATE_ERR_UNKNOWN_SIGNER' });
  // Same subject names, different key: issued-by matches by name but the signature does not verify.
  const impostor = createPki({ alg: 'ed25519' });
  t.throws(() => verifyChain([impostor.signer.der], store, now), { code: 'UPDATE_ERR_UNKNOWN_SIGNER' });
  // CA as leaf; leaf without codeSigning.
  t.throws(() => verifyChain([pki.root.der], store, now), { code: 'UPDATE_ERR_CERT_USAGE' });
  const k = generateSigningKey('ed25519');
  const noEku = createCertificate({
    subject: 'x',
    issuer: 'qperiph update root',
    issuerKey: pki.root.key,
    publicKey: k.publicKey,
    notBeforeMs: now - DAY,
    notAfterMs: now + DAY,
    ca: false,
    extKeyUsage: ['1.3.6.1.5.5.7.3.4'],
  });
  t.throws(() => verifyChain([noEku], store, now), { code: 'UPDATE_ERR_CERT_USAGE' });
  // An intermediate that is not a CA cannot issue.
  const mid = generateSigningKey('ed25519');
  const midDer = createCertificate({
    subject: 'mid',
    issuer: 'qperiph update root',
    issuerKey: pki.root.key,
    publicKey: mid.publicKey,
    notBeforeMs: now - DAY,
    notAfterMs: now + DAY,
    ca: false,
    extKeyUsage: [],
  });
  const leafK = generateSigningKey('ed25519');
  const leafDer = createCertificate({
    subject: 'leaf',
    issuer: 'mid',
    issuerKey: mid.privateKey,
    publicKey: leafK.publicKey,
    notBeforeMs: now - DAY,
    notAfterMs: now + DAY,
    ca: false,
  });
  t.throws(() => verifyChain([leafDer, midDer], store, now), { code: 'UPDATE_ERR_CHAIN' });
  // Time floor: an unset clock (1970) is lifted by the persisted last-good time.
  t.equal(timeFloor(0, now - DAY, now - 10 * DAY), now - DAY);
  t.ok(verifyChain([pki.signer.der], store, timeFloor(0, now, 0)));
  t.throws(() => verifyChain([pki.signer.der], store, now + 20 * 365 * DAY), {
    code: 'UPDATE_ERR_CERT_EXPIRED',
  });
  // A pinned Core signs with its own certificate.
  const core = generateSigningKey('p256');
  const coreDer = createCertificate({
    subject: 'core',
    issuerKey: core.privateKey,
    publicKey: core.publicKey,
    notBeforeMs: now - DAY,
    notAfterMs: now + DAY,
    ca: false,
  });
  const coreCert = new X509Certificate(coreDer);
  t.throws(() => verifyChain([coreDer], store, now), { code: 'UPDATE_ERR_UNKNOWN_SIGNER' });
  t.ok(verifyChain([coreDer], store.withPinnedCores([coreCert.fingerprint256]), now), 'pinned Core accepted');
});

t.test('install, trial, commit; then refusal of a replay and a downgrade', async (t) => {
  const outcomes: UpdateOutcome[] = [];
  const dev = await device({ outcomes });
  const b1 = join(dev.root, 'b1.qpb');
  await makeBundle(b1, pki, { version: '2.0.0', securityVersion: 5, installOrder: 'order-0001' });
  t.equal(await dev.installer.install(b1), 'rebooting');
  t.equal(await dev.selector.primary(), 'a', 'primary unchanged before the trial');
  t.equal(dev.installer.current.job?.phase, 'rebooting');
  // Power-on: the one-shot trial flag is consumed.
  t.equal(await dev.selector.boot(), 'b');
  const again = await dev.reopen();
  const r = await again.installer.resume();
  t.match(r, { result: 'committed', version: '2.0.0' });
  t.equal(await again.selector.primary(), 'b');
  t.equal((await readFile(join(dev.appRoot, 'current', 'VERSION'), 'utf8')).trim(), '2.0.0');
  t.equal(
    await readFile(join(dev.appRoot, 'b', 'start'), 'utf8'),
    'console.log("2.0.0")\n',
    'symlink extracted',
  );
  t.equal(again.installer.current.securityVersion, 5);
  t.match(outcomes, [{ result: 'committed' }], 'outcome reported');
  t.ok(dev.logger.records.some((x) => x.event === 'state' && x.to === 'committing'));
  await expectRefused(t, again, b1, 'UPDATE_ERR_REPLAY');
  const b2 = join(dev.root, 'b2.qpb');
  await makeBundle(b2, pki, { version: '1.9.0', securityVersion: 4 });
  await expectRefused(t, again, b2, 'UPDATE_ERR_DOWNGRADE');
  const b3 = join(dev.root, 'b3.qpb');
  await makeBundle(b3, pki, { version: '2.1.0', securityVersion: 5 });
  t.equal(await again.installer.install(b3), 'rebooting', 'same security version is allowed');
  t.equal(again.installer.current.job?.target, 'a');
});

t.test('failed trial falls back by itself', async (t) => {
  const dev = await device({ healthy: false });
  const b = join(dev.root, 'b.qpb');
  await makeBundle(b, pki);
  const before = await readFile(join(dev.appRoot, 'current', 'VERSION')).catch(() => null);
  t.equal(await dev.installer.install(b), 'rebooting');
  t.equal(await dev.selector.boot(), 'b');
  const trial = await dev.reopen();
  t.equal(await trial.installer.resume(), 'rebooting', 'unhealthy: reboot to the old slot');
  t.equal(trial.installer.current.job?.phase, 'rolling-back');
  t.equal(await dev.selector.boot(), 'a');
  const back = await dev.reopen();
  t.match(await back.installer.resume(), {
    result: 'rolled-back',
    reason: 'not healthy within the deadline',
  });
  t.equal(await back.selector.primary(), 'a');
  t.ok(await back.selector.isBad('b'));
  t.same(await readFile(join(dev.appRoot, 'current', 'VERSION')).catch(() => null), before);
  // A crash during the trial (power cut) consumes the flag: the old slot boots.
  const b2 = join(dev.root, 'b2.qpb');
  await makeBundle(b2, pki);
  t.equal(await back.installer.install(b2), 'rebooting');
  t.equal(await dev.selector.boot(), 'b');
  t.equal(await dev.selector.boot(), 'a', 'second power-on returns to the primary');
  t.match(await (await dev.reopen()).installer.resume(), { result: 'rolled-back' });
});

t.test('attack matrix: refused with a typed error, both slots byte-identical', async (t) => {
  const dev = await device();
  // Put something in both slots first so "unchanged" is meaningful.
  const seed = join(dev.root, 'seed.qpb');
  await makeBundle(seed, pki, { version: '1.5.0', securityVersion: 1 });
  await dev.installer.install(seed);
  await dev.selector.boot();
  t.match(await (await dev.reopen()).installer.resume(), { result: 'committed' });
  const d = await dev.reopen();
  const file = (n: string) => join(dev.root, `${n}.qpb`);
  const now = Date.now();

  await makeBundle(file('unsigned'), null);
  await expectRefused(t, d, file('unsigned'), 'UPDATE_ERR_UNSIGNED');
  await makeBundle(file('foreign'), foreign);
  await expectRefused(t, d, file('foreign'), 'UPDATE_ERR_UNKNOWN_SIGNER');
  await makeBundle(file('p256-foreign'), pkiP256);
  await expectRefused(t, d, file('p256-foreign'), 'UPDATE_ERR_UNKNOWN_SIGNER');

  const k = generateSigningKey('ed25519');
  const expired = createCertificate({
    subject: 'old',
    issuer: 'qperiph update root',
    issuerKey: pki.root.key,
    publicKey: k.publicKey,
    notBeforeMs: now - 400 * DAY,
    notAfterMs: now - 300 * DAY,
    ca: false,
  });
  await makeBundle(file('expired'), pki, { key: k.privateKey, chain: [expired] });
  await expectRefused(t, d, file('expired'), 'UPDATE_ERR_CERT_EXPIRED');
  const future = createCertificate({
    subject: 'new',
    issuer: 'qperiph update root',
    issuerKey: pki.root.key,
    publicKey: k.publicKey,
    notBeforeMs: now + 30 * DAY,
    notAfterMs: now + 300 * DAY,
    ca: false,
  });
  await makeBundle(file('future'), pki, { key: k.privateKey, chain: [future] });
  await expectRefused(t, d, file('future'), 'UPDATE_ERR_CERT_NOT_YET_VALID');

  await makeBundle(file('board'), pki, { compatible: ['rpi4', 'bbb'] });
  await expectRefused(t, d, file('board'), 'UPDATE_ERR_WRONG_BOARD');
  await makeBundle(file('product'), pki, { product: 'other' });
  await expectRefused(t, d, file('product'), 'UPDATE_ERR_WRONG_PRODUCT');
  await makeBundle(file('downgrade'), pki, { securityVersion: 0 });
  await expectRefused(t, d, file('downgrade'), 'UPDATE_ERR_DOWNGRADE');

  // Truncated at several points, and trailing ("endless") data.
  const good = file('good');
  await makeBundle(good, pki, {
    version: '3.0.0',
    payloads: [
      {
        name: 'app',
        type: 'app',
        data: appArchive('3.0.0', [
          { type: 'file', path: 'big.bin', mode: 0o644, data: Buffer.alloc(20000, 7) },
        ]),
      },
    ],
  });
  const bytes = await readFile(good);
  for (const cut of [10, HEADER_SIZE + 5, 600, bytes.length - 1]) {
    await writeFile(file('trunc'), bytes.subarray(0, cut));
    await expectRefused(t, d, file('trunc'), 'UPDATE_ERR_TRUNCATED');
  }
  await writeFile(file('trailing'), Buffer.concat([bytes, Buffer.alloc(100)]));
  await expectRefused(t, d, file('trailing'), 'UPDATE_ERR_OVERSIZED');

  // Single-bit tamper: every byte of header+manifest+envelope once, and payload bytes across the area.
  const head = await (async () => {
    const f = await BundleFile.open(good);
    try {
      return await readBundleHead(f);
    } finally {
      await f.close();
    }
  })();
  const areaStart = payloadAreaOffset(head.header);
  const store = new TrustStore({ channel: 'dev', anchors: [pki.root.cert] });
  const policy = {
    product: 'qperiph',
    board: 'virtual',
    securityVersion: 0,
    usedInstallOrders: [],
    nowMs: now,
    lastGoodMs: 0,
    buildTimeMs: 0,
  };
  const tampered = file('tamper');
  const positions: number[] = [];
  for (let i = 0; i < areaStart; i++) positions.push(i);
  for (let i = areaStart; i < bytes.length; i += 97) positions.push(i);
  positions.push(bytes.length - 1);
  let refused = 0;
  const codes = new Set<string>();
  for (const pos of positions) {
    const copy = Buffer.from(bytes);
    copy[pos] = (copy[pos] as number) ^ (1 << (pos % 8));
    await writeFile(tampered, copy);
    try {
      await verifyBundleFile(tampered, store, policy);
    } catch (err) {
      if (err instanceof UpdateError) {
        refused++;
        codes.add(err.code);
      }
    }
  }
  t.equal(
    refused,
    positions.length,
    `all ${positions.length} single-bit tampers refused (${[...codes].join(',')})`,
  );
  const oneManifest = Buffer.from(bytes);
  oneManifest[HEADER_SIZE + 40] = (oneManifest[HEADER_SIZE + 40] as number) ^ 1;
  await writeFile(tampered, oneManifest);
  await expectRefused(t, d, tampered, 'UPDATE_ERR_SIGNATURE');
  const onePayload = Buffer.from(bytes);
  onePayload[bytes.length - 3] = (onePayload[bytes.length - 3] as number) ^ 0x10;
  await writeFile(tampered, onePayload);
  await expectRefused(t, d, tampered, 'UPDATE_ERR_HASH');

  // Splice: the payload area of another signed bundle of the same size.
  const other = file('other');
  await makeBundle(other, pki, {
    version: '3.0.1',
    payloads: [
      {
        name: 'app',
        type: 'app',
        data: appArchive('3.0.1', [
          { type: 'file', path: 'big.bin', mode: 0o644, data: Buffer.alloc(20000, 8) },
        ]),
      },
    ],
  });
  const ob = await readFile(other);
  const oh = decodeHeader(ob);
  t.equal(oh.payloadLength, head.header.payloadLength, 'same payload size');
  await writeFile(
    file('splice'),
    Buffer.concat([bytes.subarray(0, areaStart), ob.subarray(payloadAreaOffset(oh))]),
  );
  await expectRefused(t, d, file('splice'), 'UPDATE_ERR_HASH');

  // Path traversal and symlink escape inside a correctly signed app payload.
  for (const [name, extra] of [
    ['dotdot', [{ type: 'file', path: '../../escape', mode: 0o644, data: Buffer.from('x') }]],
    ['abs', [{ type: 'file', path: '/etc/evil', mode: 0o644, data: Buffer.from('x') }]],
    ['link', [{ type: 'symlink', path: 'l', mode: 0o777, target: '../../../etc' }]],
    [
      'through',
      [
        { type: 'symlink', path: 'l', mode: 0o777, target: 'bin' },
        { type: 'file', path: 'l/x', mode: 0o644, data: Buffer.from('x') },
      ],
    ],
  ] as const) {
    await makeBundle(file(name), pki, {
      payloads: [{ name: 'app', type: 'app', data: appArchive('9', [...extra] as never) }],
    });
    await expectRefused(t, d, file(name), 'UPDATE_ERR_PATH');
  }
  t.equal(d.installer.counters.refused >= 20, true, 'refusals counted');
  // The good bundle still installs after all that.
  t.equal(await d.installer.install(good), 'rebooting');
});

t.test('an unset clock (1970) still accepts a valid bundle: floor = build time / last good', async (t) => {
  const clock = new FakeClock(0, 0);
  const early = await device({ clock, buildTimeMs: Date.UTC(2020, 0, 1) });
  const b0 = join(early.root, 'b.qpb');
  await makeBundle(b0, pki);
  await t.rejects(
    early.installer.install(b0),
    { code: 'UPDATE_ERR_CERT_NOT_YET_VALID' },
    'floor below the signer validity',
  );
  const dev = await device({ clock, buildTimeMs: Date.now() - 3600_000 });
  const b = join(dev.root, 'b.qpb');
  await makeBundle(b, pki);
  t.equal(await dev.installer.install(b), 'rebooting', 'build time lifts the floor');
});

t.test('dev and release anchors are kept apart; anchors rotate through a signed trust payload', async (t) => {
  const rel = createPki({ alg: 'p256', rootName: 'qperiph release root' });
  const dev = await device({ pki: rel, channel: 'release' });
  const devSigned = join(dev.root, 'dev.qpb');
  await makeBundle(devSigned, pki);
  await expectRefused(t, dev, devSigned, 'UPDATE_ERR_UNKNOWN_SIGNER');
  const next = createPki({ alg: 'ed25519', rootName: 'qperiph release root 2' });
  const rot = join(dev.root, 'rotate.qpb');
  const doc = JSON.stringify({ channel: 'release', anchors: derToPem(next.root.der) });
  await makeBundle(rot, next, { payloads: [{ name: 'trust', type: 'trust', data: Buffer.from(doc) }] });
  await expectRefused(t, dev, rot, 'UPDATE_ERR_UNKNOWN_SIGNER');
  await makeBundle(rot, rel, { payloads: [{ name: 'trust', type: 'trust', data: Buffer.from(doc) }] });
  t.match(await dev.installer.install(rot), { result: 'committed' }, 'rotation signed by the current anchor');
  const oldSigned = join(dev.root, 'old.qpb');
  await makeBundle(oldSigned, rel);
  await expectRefused(t, dev, oldSigned, 'UPDATE_ERR_UNKNOWN_SIGNER');
  const newSigned = join(dev.root, 'new.qpb');
  await makeBundle(newSigned, next);
  t.equal(await dev.installer.install(newSigned), 'rebooting', 'new anchor accepted');
});
