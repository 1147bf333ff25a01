/**
 * The Core's signing side for drills and benches: a dev signing CA with a
 * code-signing leaf (firmware/update/pki.ts), runtime trees made from the
 * project's own dist/ + package.json with a bumped version, and signed app
 * bundles built from them (firmware/update pack + bundle writer). Also the
 * Core's TLS identity (client certificate for the device Core API, server
 * certificate for the bundle download server).
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthority, generateKeyPem, issueCertificate } from '../../firmware/pki/issuer.js';
import { readBundleHead, BundleFile, writeBundle } from '../../firmware/update/bundle.js';
import { bundleDigest } from './rollout.js';

export { bundleDigest };
import { payloadAreaOffset } from '../../firmware/update/bundle-codec.js';
import { packAppDir } from '../../firmware/update/pack.js';
import { stageRuntimeTree } from '../../firmware/update/runtime-tree.js';
import { createPki, derToPem, privateKeyToPem, type KeyAlgorithm } from '../../firmware/update/pki.js';

export interface DevSigner {
  /** Trust anchor (root CA) PEM: goes to <state>/anchors/dev/ on each device. */
  rootPem: string;
  signerPem: string;
  signerKeyPem: string;
  key: KeyObject;
  /** Leaf first, DER. */
  chain: Buffer[];
}

/** A fresh signing CA and code-signing leaf; written to `dir` when given (root.pem, signer.pem, signer.key). */
export async function createDevSigner(
  o: { dir?: string; alg?: KeyAlgorithm; rootName?: string } = {},
): Promise<DevSigner> {
  const pki = createPki({ alg: o.alg ?? 'ed25519', rootName: o.rootName ?? 'qperiph drill dev root' });
  const s: DevSigner = {
    rootPem: derToPem(pki.root.der),
    signerPem: derToPem(pki.signer.der),
    signerKeyPem: privateKeyToPem(pki.signer.key),
    key: pki.signer.key,
    chain: [pki.signer.der],
  };
  if (o.dir) {
    await mkdir(o.dir, { recursive: true });
    await writeFile(join(o.dir, 'root.pem'), s.rootPem);
    await writeFile(join(o.dir, 'signer.pem'), s.signerPem);
    await writeFile(join(o.dir, 'signer.key'), s.signerKeyPem, { mode: 0o600 });
  }
  return s;
}

/** Install a signer's anchor on a device state directory (<state>/anchors/dev/drill.pem). */
export async function provisionAnchor(stateDir: string, signer: DevSigner): Promise<void> {
  const dir = join(stateDir, 'anchors', 'dev');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'drill.pem'), signer.rootPem);
}

export interface RuntimeTreeOptions {
  /** Project root holding dist/ and package.json. */
  projectRoot: string;
  out: string;
  version: string;
  /** A runtime whose cli.js fails at start (a firmware that cannot pass its health check). */
  crashAtStart?: boolean;
}

/** A runtime tree (firmware/update/runtime-tree.ts: dist, board configs, UI, package.json with `version`). */
export async function buildRuntimeTree(o: RuntimeTreeOptions): Promise<string> {
  await rm(o.out, { recursive: true, force: true });
  await stageRuntimeTree(o.projectRoot, o.out, { version: o.version });
  if (o.crashAtStart) {
    await writeFile(
      join(o.out, 'dist', 'firmware', 'cli.js'),
      "process.stderr.write('drill: this firmware fails at start\\n');\nthrow new Error('drill: broken firmware');\n",
    );
  }
  return o.out;
}

export interface SignAppOptions {
  tree: string;
  out: string;
  version: string;
  securityVersion: number;
  signer: Pick<DevSigner, 'key' | 'chain'>;
  installOrder?: string;
  board?: string[];
  product?: string;
  chunkSize?: number;
}

/** Pack a runtime tree and write a signed app bundle. Returns the bundle's manifest digest. */
export async function signAppBundle(o: SignAppOptions): Promise<{ path: string; manifestDigest: string }> {
  const tmp = await mkdtemp(join(tmpdir(), 'qperiph-drill-sign-'));
  try {
    const arc = join(tmp, 'app.qapp');
    await packAppDir(o.tree, arc);
    await writeBundle(o.out, {
      product: o.product ?? 'qperiph',
      compatible: o.board ?? ['virtual'],
      version: o.version,
      securityVersion: o.securityVersion,
      installOrder: o.installOrder ?? randomBytes(12).toString('hex'),
      ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}),
      payloads: [{ name: 'app', type: 'app', path: arc }],
      key: o.signer.key,
      chain: o.signer.chain,
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return { path: o.out, manifestDigest: await bundleDigest(o.out) };
}

/** Copy a bundle and flip bytes in its payload area: the signature still verifies, a chunk hash does not. */
export async function corruptBundle(src: string, dst: string): Promise<void> {
  const bytes = await readFile(src);
  const f = await BundleFile.open(src);
  let base: number;
  try {
    base = payloadAreaOffset((await readBundleHead(f)).header);
  } finally {
    await f.close();
  }
  const at = base + Math.floor((bytes.length - base) / 2);
  for (let i = at; i < Math.min(at + 16, bytes.length); i++) bytes[i] = (bytes[i] ?? 0) ^ 0xa5;
  const fh = await open(dst, 'w');
  try {
    await fh.write(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface TlsIdentity {
  caPem: string;
  cert: string;
  key: string;
}

/** The Core's TLS identity: a CA, and a leaf usable as client (device API) and server (bundle downloads). */
export async function createCoreTlsIdentity(ips: string[] = ['127.0.0.1']): Promise<TlsIdentity> {
  const now = Date.now();
  const ca = await createAuthority(
    'qperiph drill core CA',
    new Date(now - 86_400_000),
    new Date(now + 30 * 86_400_000),
  );
  const key = await generateKeyPem();
  const cert = await issueCertificate(ca, {
    subjectKeyPem: key,
    commonName: 'qperiph drill core',
    ips,
    dnsNames: ['localhost'],
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 30 * 86_400_000),
  });
  return { caPem: ca.certPem, cert, key };
}
