/**
 * `qperiph bundle keygen|sign|verify|inspect` (+ `install|boot` on a
 * development device directory, used by drills and the crash tests).
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createJsonLogger } from '../log/logger.js';
import { BundleFile, readBundleHead, writeBundle, type PayloadInput } from './bundle.js';
import { decodeManifest } from './bundle-codec.js';
import { createSimDevice, crashHookFromEnv } from './device-sim.js';
import { isUpdateError, UpdateError } from './errors.js';
import { Installer } from './installer.js';
import { DirectoryBootSelector } from './boot-selector.js';
import { packAppDir } from './pack.js';
import {
  createCertificate,
  createPki,
  derToPem,
  generateSigningKey,
  loadPrivateKey,
  pemToDers,
  privateKeyToPem,
  type KeyAlgorithm,
} from './pki.js';
import { TrustStore } from './trust.js';
import { createSystemClock } from '../clock/clock.js';
import { createMemoryLogger } from '../log/logger.js';

export const BUNDLE_HELP = `Usage: qperiph bundle <command> [options]

Commands:
  keygen  --out DIR [--alg ed25519|p256] [--name CN] [--days N]
          [--ca-key KEY --ca-cert PEM]
          Without a CA: writes root.pem/root.key (trust anchor) and
          signer.pem/signer.key (code-signing leaf). With a CA: only the signer.
  sign    --key signer.key --chain signer.pem --out FILE --board B[,B...]
          --version V --security-version N [--product qperiph]
          [--install-order ID] [--chunk-size BYTES]
          [--app DIR] [--rootfs IMG] [--boot IMG] [--trust PEM --channel dev|release]
  verify  BUNDLE --anchors PEM [--board B] [--product P] [--security-version N]
          Full check: chain, signature, policy and every payload chunk.
  inspect BUNDLE   Print header and manifest (no verification).
  install BUNDLE --root DIR [--board B]        (development device directory)
  boot    --root DIR [--unhealthy]             (power-on of the development device)

Exit status: 0 success, 1 refused or failed, 2 usage error.
`;

type Env = Record<string, string | undefined>;

function out(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function need(v: string | undefined, name: string): string {
  if (!v) throw new UpdateError('UPDATE_ERR_USAGE', `missing --${name}`);
  return v;
}

export async function runBundleCli(argv: string[], env: Env = process.env): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(BUNDLE_HELP);
    return cmd ? 0 : 2;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        alg: { type: 'string' },
        name: { type: 'string' },
        days: { type: 'string' },
        'ca-key': { type: 'string' },
        'ca-cert': { type: 'string' },
        key: { type: 'string' },
        chain: { type: 'string' },
        board: { type: 'string' },
        product: { type: 'string' },
        version: { type: 'string' },
        'security-version': { type: 'string' },
        'install-order': { type: 'string' },
        'chunk-size': { type: 'string' },
        app: { type: 'string' },
        rootfs: { type: 'string' },
        boot: { type: 'string' },
        trust: { type: 'string' },
        channel: { type: 'string' },
        anchors: { type: 'string' },
        root: { type: 'string' },
        unhealthy: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(BUNDLE_HELP);
      return 0;
    }
    switch (cmd) {
      case 'keygen': {
        const dir = need(values.out, 'out');
        const alg = (values.alg ?? 'ed25519') as KeyAlgorithm;
        if (alg !== 'ed25519' && alg !== 'p256')
          throw new UpdateError('UPDATE_ERR_USAGE', '--alg must be ed25519 or p256');
        const days = Number(values.days ?? 3650);
        await mkdir(dir, { recursive: true });
        if (values['ca-key'] && values['ca-cert']) {
          const caKey = loadPrivateKey(await readFile(values['ca-key']));
          const caDer = pemToDers(await readFile(values['ca-cert'], 'utf8'))[0];
          if (!caDer) throw new UpdateError('UPDATE_ERR_KEY', 'no certificate in --ca-cert');
          const ca = new X509Certificate(caDer);
          const keys = generateSigningKey(alg);
          const cn = /CN=([^\n]+)/.exec(ca.subject)?.[1] ?? 'qperiph update root';
          const der = createCertificate({
            subject: values.name ?? 'qperiph bundle signer',
            issuer: cn,
            issuerKey: caKey,
            publicKey: keys.publicKey,
            notBeforeMs: Date.now() - 86_400_000,
            notAfterMs: Date.now() + days * 86_400_000,
            ca: false,
          });
          await writeFile(join(dir, 'signer.pem'), derToPem(der));
          await writeFile(join(dir, 'signer.key'), privateKeyToPem(keys.privateKey), { mode: 0o600 });
        } else {
          const pki = createPki({ alg, days, ...(values.name ? { signerName: values.name } : {}) });
          await writeFile(join(dir, 'root.pem'), derToPem(pki.root.der));
          await writeFile(join(dir, 'root.key'), privateKeyToPem(pki.root.key), { mode: 0o600 });
          await writeFile(join(dir, 'signer.pem'), derToPem(pki.signer.der));
          await writeFile(join(dir, 'signer.key'), privateKeyToPem(pki.signer.key), { mode: 0o600 });
        }
        out({ event: 'bundle.keygen', dir, alg });
        return 0;
      }
      case 'sign': {
        const key = loadPrivateKey(await readFile(need(values.key, 'key')));
        const chain = pemToDers(await readFile(need(values.chain, 'chain'), 'utf8'));
        const payloads: PayloadInput[] = [];
        const tmp = await mkdtemp(join(tmpdir(), 'qperiph-sign-'));
        try {
          if (values.app) {
            const f = join(tmp, 'app.qapp');
            await packAppDir(values.app, f);
            payloads.push({ name: 'app', type: 'app', path: f });
          }
          if (values.boot) payloads.push({ name: 'boot', type: 'boot', path: values.boot });
          if (values.rootfs) payloads.push({ name: 'rootfs', type: 'rootfs', path: values.rootfs });
          if (values.trust) {
            const doc = JSON.stringify({
              channel: values.channel ?? 'release',
              anchors: await readFile(values.trust, 'utf8'),
            });
            payloads.push({ name: 'trust', type: 'trust', data: Buffer.from(doc) });
          }
          if (payloads.length === 0)
            throw new UpdateError(
              'UPDATE_ERR_USAGE',
              'give at least one of --app, --rootfs, --boot, --trust',
            );
          const manifest = await writeBundle(need(values.out, 'out'), {
            product: values.product ?? 'qperiph',
            compatible: need(values.board, 'board').split(','),
            version: need(values.version, 'version'),
            securityVersion: Number(need(values['security-version'], 'security-version')),
            installOrder: values['install-order'] ?? randomBytes(12).toString('hex'),
            ...(values['chunk-size'] ? { chunkSize: Number(values['chunk-size']) } : {}),
            payloads,
            key,
            chain,
          });
          out({
            event: 'bundle.signed',
            out: values.out,
            version: manifest.version,
            installOrder: manifest.installOrder,
          });
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
        return 0;
      }
      case 'inspect': {
        const file = await BundleFile.open(need(positionals[0], 'bundle'));
        try {
          const head = await readBundleHead(file);
          const manifest = decodeManifest(head.manifestBytes, head.header.payloadLength);
          out({
            header: head.header,
            manifestDigest: head.manifestDigest,
            signed: head.header.envelopeLength > 0,
            manifest: {
              ...manifest,
              payloads: manifest.payloads.map((p) => ({ ...p, chunks: p.chunks.length })),
            },
          });
        } finally {
          await file.close();
        }
        return 0;
      }
      case 'verify': {
        const anchors = pemToDers(await readFile(need(values.anchors, 'anchors'), 'utf8')).map(
          (d) => new X509Certificate(d),
        );
        const store = new TrustStore({ channel: 'release', anchors });
        const bundle = need(positionals[0], 'bundle');
        let board = values.board;
        if (!board) {
          // Without --board any listed board is accepted: check against the first one.
          const f = await BundleFile.open(bundle);
          const h = await readBundleHead(f).finally(() => f.close());
          board = decodeManifest(h.manifestBytes, h.header.payloadLength).compatible[0] ?? '';
        }
        const none = join(tmpdir(), `qperiph-verify-${process.pid}-none`);
        const noSelector = new DirectoryBootSelector(none);
        const installer = new Installer({
          stateFile: join(none, 'update.json'),
          trust: () => Promise.resolve(store),
          rotatedTrustFile: join(none, 'anchors.json'),
          product: values.product ?? 'qperiph',
          board,
          buildTimeMs: 0,
          clock: createSystemClock(),
          logger: createMemoryLogger(),
          health: () => Promise.resolve(true),
          app: { root: none, selector: noSelector },
          system: { rootfs: { a: '', b: '' }, boot: { a: '', b: '' }, selector: noSelector },
        });
        const head = await installer.verify(bundle);
        out({
          event: 'bundle.verified',
          version: head.manifest.version,
          securityVersion: head.manifest.securityVersion,
          signer: head.signer.subject.replace(/\n/g, ','),
          manifestDigest: head.manifestDigest,
        });
        return 0;
      }
      case 'install':
      case 'boot': {
        const root = need(values.root, 'root');
        const logger = createJsonLogger({ bindings: { module: 'update' } });
        const crashHook = crashHookFromEnv(env['QPERIPH_UPDATE_CRASH']);
        const healthy = !values.unhealthy;
        const dev = await createSimDevice({
          root,
          logger,
          ...(values.board ? { board: values.board } : {}),
          ...(crashHook ? { crashHook } : {}),
          healthy: () => Promise.resolve(healthy),
          healthDeadlineMs: 300,
          ...(env['QPERIPH_UPDATE_PROGRESS_BYTES']
            ? { progressEveryBytes: Number(env['QPERIPH_UPDATE_PROGRESS_BYTES']) }
            : {}),
        });
        if (cmd === 'boot') {
          const slot = await dev.selector.boot();
          const system = await dev.systemSelector.boot();
          logger.info('update.booted', { slot, system });
          const r = await dev.installer.resume();
          out({
            event: 'bundle.boot',
            slot,
            result: r === null ? 'idle' : r === 'rebooting' ? 'rebooting' : r.result,
          });
          return 0;
        }
        const r = await dev.installer.install(need(positionals[0], 'bundle'));
        out({ event: 'bundle.install', result: r === 'rebooting' ? 'rebooting' : r.result });
        return 0;
      }
      default:
        process.stderr.write(`unknown bundle command '${cmd}'\n${BUNDLE_HELP}`);
        return 2;
    }
  } catch (err) {
    if (isUpdateError(err) && err.code === 'UPDATE_ERR_USAGE') {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    const code = isUpdateError(err) ? err.code : 'UPDATE_ERR_USAGE';
    out({ event: 'bundle.error', code, message: (err as Error).message });
    return 1;
  }
}
