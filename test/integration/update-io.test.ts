/**
 * The update module against real processes and sockets: the tryboot and
 * U-Boot selectors driving fake `reboot` / `fw_setenv` / `fw_printenv` tools on
 * PATH (state in files, a test-side "firmware" picks the booted slot), the
 * resumable HTTP download (loopback 127.0.2.1), the upload handler, and the
 * compiled `bundle` CLI cross-checked with openssl.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { createSystemClock } from '../../firmware/clock/clock.js';
import { createMemoryLogger } from '../../firmware/log/logger.js';
import {
  DirectoryBootSelector,
  initDirectorySlots,
  parseAutoboot,
  TrybootSelector,
  UbootSelector,
  type BootSelector,
  type SlotName,
} from '../../firmware/update/boot-selector.js';
import { downloadBundle } from '../../firmware/update/downloader.js';
import { Installer, type InstallerOptions } from '../../firmware/update/installer.js';
import { createCertificate, createPki, derToPem, generateSigningKey } from '../../firmware/update/pki.js';
import {
  createBundleUploadHandler,
  pinnedCoreAuthorizer,
  UpdateService,
} from '../../firmware/update/service.js';
import { TrustStore } from '../../firmware/update/trust.js';
import { makeBundle } from '../fixtures/update/helpers.js';
import { ROOT } from '../helpers/processes.js';

const exec = promisify(execFile);
const HOST = '127.0.2.1';
const base = await mkdtemp(join(tmpdir(), 'qperiph-update-io-'));
t.teardown(() => rm(base, { recursive: true, force: true }));
const pki = createPki({ alg: 'p256' });
const store = new TrustStore({ channel: 'release', anchors: [pki.root.cert] });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function fakeTools(dir: string): Promise<NodeJS.ProcessEnv> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  // reboot: record each argument on its own line, one call per line group.
  await writeFile(
    join(bin, 'reboot'),
    `#!/bin/sh\nprintf 'call %s\\n' "$#" >> "${dir}/reboot.log"\nfor a in "$@"; do printf 'arg %s\\n' "$a" >> "${dir}/reboot.log"; done\n`,
  );
  // fw_printenv NAME: from the env file (key=value); exit 1 when unset.
  await writeFile(
    join(bin, 'fw_printenv'),
    `#!/bin/sh\nline=$(grep "^$1=" "${dir}/uboot.env" 2>/dev/null) || exit 1\necho "$line"\n`,
  );
  // fw_setenv -s SCRIPT: apply all "key value" lines at once (temp + rename), log the call.
  await writeFile(
    join(bin, 'fw_setenv'),
    `#!/bin/sh\n[ "$1" = "-s" ] || exit 2\necho "setenv" >> "${dir}/fw_setenv.log"\ntouch "${dir}/uboot.env"\ncp "${dir}/uboot.env" "${dir}/uboot.env.new"\nwhile read -r k v; do\n  [ -n "$k" ] || continue\n  grep -v "^$k=" "${dir}/uboot.env.new" > "${dir}/uboot.env.tmp"; mv "${dir}/uboot.env.tmp" "${dir}/uboot.env.new"\n  echo "$k=$v" >> "${dir}/uboot.env.new"\ndone < "$2"\nmv "${dir}/uboot.env.new" "${dir}/uboot.env"\n`,
  );
  for (const f of ['reboot', 'fw_printenv', 'fw_setenv']) await chmod(join(bin, f), 0o755);
  return { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
}

async function systemInstaller(dir: string, selector: BootSelector, healthy: boolean): Promise<Installer> {
  const rootfs = { a: join(dir, 'rootfs-a.img'), b: join(dir, 'rootfs-b.img') };
  const boot = { a: join(dir, 'boot-a.img'), b: join(dir, 'boot-b.img') };
  for (const f of [...Object.values(rootfs), ...Object.values(boot)])
    await writeFile(f, Buffer.alloc(8192, 0xee), { flag: 'a' });
  const o: InstallerOptions = {
    stateFile: join(dir, 'state', 'update.json'),
    system: { selector, rootfs, boot },
    trust: () => Promise.resolve(store),
    rotatedTrustFile: join(dir, 'state', 'anchors.json'),
    product: 'qperiph',
    board: 'rpi4',
    buildTimeMs: Date.now() - 3600_000,
    clock: createSystemClock(),
    logger: createMemoryLogger(),
    health: () => Promise.resolve(healthy),
    healthDeadlineMs: 150,
    healthIntervalMs: 30,
  };
  return new Installer(o);
}

const rootfsImage = Buffer.alloc(40_000, 0x5a);
const bootImage = Buffer.alloc(9_000, 0xb0);
rootfsImage.write('rootfs v2', 0);

t.test('Raspberry Pi tryboot selector with a fake boot partition and reboot', async (t) => {
  const dir = join(base, 'tryboot');
  const env = await fakeTools(dir);
  const bootcfg = join(dir, 'bootconfig');
  const dt = join(dir, 'dt');
  await mkdir(bootcfg, { recursive: true });
  await mkdir(dt, { recursive: true });
  await writeFile(
    join(bootcfg, 'autoboot.txt'),
    '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n',
  );
  const sel = new TrybootSelector({
    bootConfigDir: bootcfg,
    partitions: { a: 2, b: 3 },
    deviceTreeDir: dt,
    env,
  });
  // The firmware: the tryboot flag is one-shot, cleared before it starts the OS.
  const firmware = async (): Promise<SlotName> => {
    const log = await readFile(join(dir, 'reboot.log'), 'utf8').catch(() => '');
    const lastCall = log.split('call ').pop() ?? '';
    const trial = lastCall.includes('arg 0 tryboot');
    await writeFile(join(dir, 'reboot.log'), '');
    const ab = parseAutoboot(await readFile(join(bootcfg, 'autoboot.txt'), 'utf8'));
    const part = (trial ? ab.tryboot : ab.all) ?? 2;
    const b = Buffer.alloc(4);
    b.writeUInt32BE(part);
    await writeFile(join(dt, 'partition'), b);
    await writeFile(join(dt, 'tryboot'), Buffer.from([0, 0, 0, trial ? 1 : 0]));
    return part === 3 ? 'b' : 'a';
  };
  t.equal(await firmware(), 'a');
  const bundle = join(dir, 'sys.qpb');
  await makeBundle(bundle, pki, {
    compatible: ['rpi4'],
    payloads: [
      { name: 'boot', type: 'boot', data: bootImage },
      { name: 'rootfs', type: 'rootfs', data: rootfsImage },
    ],
  });
  const rootfsA = await readFile(join(dir, 'rootfs-a.img')).catch(() => null);
  const inst = await systemInstaller(dir, sel, true);
  const rootfsABefore = rootfsA ?? (await readFile(join(dir, 'rootfs-a.img')));
  t.equal(await inst.install(bundle), 'rebooting');
  const log = await readFile(join(dir, 'reboot.log'), 'utf8');
  t.equal(log, 'call 1\narg 0 tryboot\n', 'reboot called with the single argument "0 tryboot"');
  t.same(
    parseAutoboot(await readFile(join(bootcfg, 'autoboot.txt'), 'utf8')),
    { all: 2, tryboot: 3 },
    'normal boot still goes to A',
  );
  t.ok((await readFile(join(bootcfg, 'autoboot.txt'), 'utf8')).includes('tryboot_a_b=1'));
  t.equal(
    sha((await readFile(join(dir, 'rootfs-b.img'))).subarray(0, rootfsImage.length)),
    sha(rootfsImage),
    'slot B written',
  );
  t.same(await readFile(join(dir, 'rootfs-a.img')), rootfsABefore, 'slot A untouched');
  t.equal(await firmware(), 'b', 'trial boot runs B');
  const after = await systemInstaller(dir, sel, true);
  t.match(await after.resume(), { result: 'committed' });
  t.same(
    parseAutoboot(await readFile(join(bootcfg, 'autoboot.txt'), 'utf8')),
    { all: 3, tryboot: 2 },
    'B is primary',
  );
  t.equal(await firmware(), 'b', 'normal boot stays on B');

  // A failing trial: back to B by itself.
  const bad = join(dir, 'bad.qpb');
  await makeBundle(bad, pki, {
    compatible: ['rpi4'],
    payloads: [{ name: 'rootfs', type: 'rootfs', data: Buffer.alloc(30_000, 1) }],
  });
  const i2 = await systemInstaller(dir, sel, false);
  t.equal(await i2.install(bad), 'rebooting');
  t.equal(await firmware(), 'a', 'trial of A');
  const i3 = await systemInstaller(dir, sel, false);
  t.equal(await i3.resume(), 'rebooting', 'unhealthy: plain reboot');
  t.match(await readFile(join(dir, 'reboot.log'), 'utf8'), /^call 0\n$/, 'plain reboot without tryboot');
  t.equal(await firmware(), 'b', 'back on B');
  t.match(await (await systemInstaller(dir, sel, false)).resume(), { result: 'rolled-back' });
});

t.test('U-Boot selector: one atomic fw_setenv script per change, BOOT_ORDER and BOOT_x_LEFT', async (t) => {
  const dir = join(base, 'uboot');
  const env = await fakeTools(dir);
  await writeFile(join(dir, 'uboot.env'), 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n');
  const cmdline = join(dir, 'cmdline');
  const sel = new UbootSelector({ cmdlinePath: cmdline, env });
  // The boot script: first slot in BOOT_ORDER with attempts left, decrement, boot it.
  const firmware = async (): Promise<SlotName> => {
    const vars = Object.fromEntries(
      (await readFile(join(dir, 'uboot.env'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    for (const n of (vars['BOOT_ORDER'] ?? '').split(' ')) {
      const left = Number(vars[`BOOT_${n}_LEFT`] ?? 0);
      if (left > 0) {
        vars[`BOOT_${n}_LEFT`] = String(left - 1);
        await writeFile(
          join(dir, 'uboot.env'),
          Object.entries(vars)
            .map(([k, v]) => `${k}=${v}\n`)
            .join(''),
        );
        await writeFile(cmdline, `console=ttyS0 qperiph.slot=${n}\n`);
        return n === 'A' ? 'a' : 'b';
      }
    }
    throw new Error('no bootable slot');
  };
  t.equal(await firmware(), 'a');
  const bundle = join(dir, 'sys.qpb');
  await makeBundle(bundle, pki, {
    compatible: ['rpi4'],
    payloads: [{ name: 'rootfs', type: 'rootfs', data: rootfsImage }],
  });
  const inst = await systemInstaller(dir, sel, true);
  await writeFile(join(dir, 'fw_setenv.log'), '');
  t.equal(await inst.install(bundle), 'rebooting');
  t.equal(
    (await readFile(join(dir, 'fw_setenv.log'), 'utf8')).trim().split('\n').length,
    2,
    'mark-bad and arm: one fw_setenv call each',
  );
  const envText = await readFile(join(dir, 'uboot.env'), 'utf8');
  t.match(envText, /BOOT_ORDER=B A/);
  t.match(envText, /BOOT_B_LEFT=1/);
  t.equal(await firmware(), 'b');
  t.match(await (await systemInstaller(dir, sel, true)).resume(), { result: 'committed' });
  t.match(await readFile(join(dir, 'uboot.env'), 'utf8'), /BOOT_B_LEFT=3/);
  // Unhealthy trial of A: its single attempt is used up, U-Boot returns to B.
  const bad = join(dir, 'bad.qpb');
  await makeBundle(bad, pki, {
    compatible: ['rpi4'],
    payloads: [{ name: 'rootfs', type: 'rootfs', data: Buffer.alloc(20_000, 3) }],
  });
  t.equal(await (await systemInstaller(dir, sel, false)).install(bad), 'rebooting');
  t.equal(await firmware(), 'a', 'trial of A');
  t.equal(await (await systemInstaller(dir, sel, false)).resume(), 'rebooting');
  t.match(await readFile(join(dir, 'uboot.env'), 'utf8'), /BOOT_A_LEFT=0/, 'A marked bad');
  t.equal(await firmware(), 'b', 'fell back to B');
  t.match(await (await systemInstaller(dir, sel, false)).resume(), { result: 'rolled-back' });
});

function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer(handler);
    const tryPort = (port: number): void => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        err.code === 'EADDRINUSE' && port < 18990 ? tryPort(port + 1) : reject(err),
      );
      server.listen(port, HOST, () => resolve({ server, port }));
    };
    tryPort(18200 + Math.floor(Math.random() * 200));
  });
}

t.test(
  'HTTP download resumes by Range from the last verified chunk; tamper and endless data refused',
  async (t) => {
    const dir = join(base, 'http');
    await mkdir(dir, { recursive: true });
    const bundlePath = join(dir, 'b.qpb');
    await makeBundle(bundlePath, pki, {
      compatible: ['rpi4'],
      payloads: [{ name: 'rootfs', type: 'rootfs', data: Buffer.alloc(100_000, 9) }],
    });
    const good = await readFile(bundlePath);
    const ranges: string[] = [];
    let mode: 'good' | 'tamper' | 'endless' = 'good';
    const { server, port } = await listen((req, res) => {
      const range = req.headers.range;
      ranges.push(range ?? '-');
      let body = good;
      if (mode === 'tamper') {
        body = Buffer.from(good);
        body[good.length - 5] = (body[good.length - 5] as number) ^ 1;
      }
      if (mode === 'endless') {
        res.writeHead(200);
        res.write(good);
        const timer = setInterval(() => res.write(Buffer.alloc(4096)), 1);
        res.on('close', () => clearInterval(timer));
        return;
      }
      const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
      if (m) {
        const start = Number(m[1]);
        res.writeHead(206, {
          'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
          'content-length': body.length - start,
        });
        res.end(body.subarray(start));
      } else {
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      }
    });
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const policy = {
      product: 'qperiph',
      board: 'rpi4',
      securityVersion: 0,
      usedInstallOrders: [],
      nowMs: Date.now(),
      lastGoodMs: 0,
      buildTimeMs: 0,
    };
    const url = `http://${HOST}:${port}/b.qpb`;
    const dest = join(dir, 'dl.qpb');
    await t.rejects(
      downloadBundle({
        url,
        dest,
        trust: store,
        policy,
        logger: createMemoryLogger(),
        cutAfterBytes: 50_000,
      }),
      { code: 'UPDATE_ERR_DOWNLOAD' },
    );
    const progress = JSON.parse(await readFile(`${dest}.progress`, 'utf8')) as { verified: number };
    t.ok(
      progress.verified > 30_000 && progress.verified <= 50_000,
      `verified ${progress.verified} bytes before the cut`,
    );
    const r = await downloadBundle({ url, dest, trust: store, policy, logger: createMemoryLogger() });
    t.equal(r.resumedFrom, progress.verified);
    t.equal(ranges[ranges.length - 1], `bytes=${progress.verified}-`, 'asked for the rest by Range');
    t.equal(sha(await readFile(dest)), sha(good), 'downloaded bundle is byte-identical');
    mode = 'tamper';
    await t.rejects(
      downloadBundle({ url, dest: join(dir, 'bad.qpb'), trust: store, policy, logger: createMemoryLogger() }),
      { code: 'UPDATE_ERR_HASH' },
    );
    mode = 'endless';
    await t.rejects(
      downloadBundle({
        url,
        dest: join(dir, 'endless.qpb'),
        trust: store,
        policy,
        logger: createMemoryLogger(),
      }),
      { code: 'UPDATE_ERR_OVERSIZED' },
    );
  },
);

t.test('upload handler: accepted, refused, oversized', async (t) => {
  const dir = join(base, 'upload');
  await mkdir(dir, { recursive: true });
  const sel = new DirectoryBootSelector(join(dir, 'app'));
  await initDirectorySlots(join(dir, 'app'));
  const service = new UpdateService({
    stateFile: join(dir, 'state', 'update.json'),
    app: { root: join(dir, 'app'), selector: sel },
    trust: () => Promise.resolve(store),
    rotatedTrustFile: join(dir, 'state', 'anchors.json'),
    product: 'qperiph',
    board: 'virtual',
    buildTimeMs: Date.now(),
    clock: createSystemClock(),
    logger: createMemoryLogger(),
    health: () => Promise.resolve(true),
    spoolDir: join(dir, 'spool'),
    maxBundleBytes: 200_000,
  });
  await service.start();
  const { server, port } = await listen(createBundleUploadHandler({ service }));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const post = (body: Buffer) =>
    new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
      const req = request(
        { host: HOST, port, method: 'POST', path: '/api/update', headers: { 'content-length': body.length } },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(text || '{}') as Record<string, unknown>,
            }),
          );
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) =>
        err.code === 'ECONNRESET' || err.code === 'EPIPE'
          ? resolve({ status: 413, json: { code: 'reset' } })
          : reject(err),
      );
      req.end(body);
    });
  const unsigned = join(dir, 'u.qpb');
  await makeBundle(unsigned, null);
  const r1 = await post(await readFile(unsigned));
  t.equal(r1.status, 422);
  t.equal(r1.json['code'], 'UPDATE_ERR_UNSIGNED');
  const r2 = await post(Buffer.alloc(300_000));
  t.equal(r2.status, 413, 'oversized upload refused');
  const ok = join(dir, 'ok.qpb');
  await makeBundle(ok, pki);
  const r3 = await post(await readFile(ok));
  t.equal(r3.status, 202);
  t.equal(r3.json['result'], 'rebooting');
  t.equal(service.status().phase, 'rebooting');
});

t.test(
  'Core push over HTTPS with mutual TLS: only a pinned Core client certificate may upload',
  async (t) => {
    const dir = join(base, 'mtls');
    await mkdir(dir, { recursive: true });
    const now = Date.now();
    const mk = (cn: string, eku: string[]) => {
      const k = generateSigningKey('p256');
      const der = createCertificate({
        subject: cn,
        issuerKey: k.privateKey,
        publicKey: k.publicKey,
        notBeforeMs: now - 86_400_000,
        notAfterMs: now + 86_400_000,
        ca: false,
        extKeyUsage: eku,
      });
      return {
        key: k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        cert: derToPem(der),
        fp: new X509Certificate(der).fingerprint256,
      };
    };
    const device = mk('peripheral', ['1.3.6.1.5.5.7.3.1']);
    const core = mk('core', ['1.3.6.1.5.5.7.3.2']);
    const stranger = mk('stranger', ['1.3.6.1.5.5.7.3.2']);
    const sel = new DirectoryBootSelector(join(dir, 'app'));
    await initDirectorySlots(join(dir, 'app'));
    const service = new UpdateService({
      stateFile: join(dir, 'state', 'update.json'),
      app: { root: join(dir, 'app'), selector: sel },
      trust: () => Promise.resolve(store),
      rotatedTrustFile: join(dir, 'state', 'anchors.json'),
      product: 'qperiph',
      board: 'virtual',
      buildTimeMs: now,
      clock: createSystemClock(),
      logger: createMemoryLogger(),
      health: () => Promise.resolve(true),
      spoolDir: join(dir, 'spool'),
      maxBundleBytes: 1_000_000,
    });
    await service.start();
    const handler = createBundleUploadHandler({ service, authorize: pinnedCoreAuthorizer(() => [core.fp]) });
    const server = createHttpsServer(
      {
        key: device.key,
        cert: device.cert,
        requestCert: true,
        rejectUnauthorized: false,
        ca: [core.cert, stranger.cert],
        minVersion: 'TLSv1.3',
      },
      handler,
    );
    const port = await new Promise<number>((resolve, reject) => {
      const tryPort = (p: number): void => {
        server.once('error', (err: NodeJS.ErrnoException) =>
          err.code === 'EADDRINUSE' && p < 18999 ? tryPort(p + 1) : reject(err),
        );
        server.listen(p, HOST, () => resolve(p));
      };
      tryPort(18500 + Math.floor(Math.random() * 200));
    });
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const bundle = join(dir, 'ok.qpb');
    await makeBundle(bundle, pki);
    const body = await readFile(bundle);
    const push = (client: { key: string; cert: string } | null) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: HOST,
            port,
            method: 'POST',
            path: '/update',
            ca: device.cert,
            checkServerIdentity: () => undefined,
            headers: { 'content-length': body.length },
            ...(client ?? {}),
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    t.equal(await push(null), 403, 'no client certificate: refused');
    t.equal(await push(stranger), 403, 'a Core that is not pinned: refused');
    t.equal(await push(core), 202, 'the pinned Core: accepted');
  },
);

t.test('compiled bundle CLI: keygen, sign, inspect, verify; openssl accepts the chain', async (t) => {
  const dir = join(base, 'cli');
  await mkdir(join(dir, 'app', 'bin'), { recursive: true });
  await writeFile(join(dir, 'app', 'bin', 'run.js'), 'console.log(1)\n');
  const entry = join(ROOT, 'dist', 'firmware', 'update', 'bundle-main.js');
  const cli = (...args: string[]) => exec(process.execPath, [entry, ...args], { cwd: dir });
  await cli('keygen', '--out', 'keys', '--alg', 'p256');
  await cli(
    'sign',
    '--key',
    'keys/signer.key',
    '--chain',
    'keys/signer.pem',
    '--out',
    'b.qpb',
    '--board',
    'virtual,rpi4',
    '--version',
    '1.2.3',
    '--security-version',
    '7',
    '--app',
    'app',
  );
  const inspect = JSON.parse((await cli('inspect', 'b.qpb')).stdout) as {
    manifest: { version: string; securityVersion: number };
  };
  t.equal(inspect.manifest.version, '1.2.3');
  t.equal(inspect.manifest.securityVersion, 7);
  const v = JSON.parse(
    (await cli('verify', 'b.qpb', '--anchors', 'keys/root.pem', '--board', 'rpi4')).stdout,
  ) as { event: string };
  t.equal(v.event, 'bundle.verified');
  await writeFile(join(dir, 'other.pem'), derToPem(createPki().root.der));
  const bad = await cli('verify', 'b.qpb', '--anchors', 'other.pem').catch(
    (e: { code: number; stdout: string }) => e,
  );
  t.equal((bad as { code: number }).code, 1);
  t.match((bad as { stdout: string }).stdout, /UPDATE_ERR_UNKNOWN_SIGNER/);
  const help = await cli('--help');
  t.match(help.stdout, /keygen/);
  if (spawnSync('openssl', ['version']).status !== 0) {
    t.pass('openssl is not installed: chain cross-check skipped');
  } else {
    const o = spawnSync(
      'openssl',
      ['verify', '-CAfile', 'keys/root.pem', '-purpose', 'any', 'keys/signer.pem'],
      { cwd: dir, encoding: 'utf8' },
    );
    t.match(o.stdout, /signer.pem: OK/, 'openssl verifies the generated chain');
    const text = spawnSync('openssl', ['x509', '-in', 'keys/signer.pem', '-noout', '-text'], {
      cwd: dir,
      encoding: 'utf8',
    }).stdout;
    t.match(text, /Code Signing/);
    t.match(text, /CA:FALSE/);
  }
});
