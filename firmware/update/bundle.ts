/**
 * Reading, verifying and writing bundle files. Verification order (as RAUC):
 * header limits, exact length, envelope, chain, signature over the manifest
 * bytes, manifest policy, then every payload chunk against the signed hashes.
 */
import {
  createHash,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
  X509Certificate,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import {
  decodeEnvelope,
  decodeHeader,
  decodeManifest,
  DEFAULT_CHUNK,
  encodeEnvelope,
  encodeHeader,
  encodeManifest,
  HEADER_SIZE,
  payloadAreaOffset,
  SIGNATURE_DOMAIN,
  totalLength,
  type BundleHeader,
  type Manifest,
  type PayloadEntry,
  type PayloadType,
  type SignatureEnvelope,
} from './bundle-codec.js';
import { UpdateError } from './errors.js';
import { timeFloor, verifyChain, type TrustStore } from './trust.js';

export interface BundleHead {
  header: BundleHeader;
  manifestBytes: Buffer;
  envelopeBytes: Buffer;
  /** SHA-256 of the manifest bytes: names this bundle (journal, resume, reports). */
  manifestDigest: string;
}

export interface VerifiedHead extends BundleHead {
  manifest: Manifest;
  signer: X509Certificate;
}

export interface DevicePolicy {
  product: string;
  board: string;
  /** Highest committed security version; lower is a downgrade. */
  securityVersion: number;
  usedInstallOrders: readonly string[];
  nowMs: number;
  lastGoodMs: number;
  buildTimeMs: number;
  maxBundleBytes?: number;
}

/** Random-access reads of a bundle held in a file. */
export class BundleFile {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<BundleFile> {
    const fh = await open(path, 'r');
    const st = await fh.stat();
    return new BundleFile(fh, st.size);
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0)
        throw new UpdateError('UPDATE_ERR_TRUNCATED', 'bundle ends early', { offset: offset + done });
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** Read the head and enforce the exact length (truncated and trailing data are both refused). */
export async function readBundleHead(
  file: BundleFile,
  maxBundleBytes?: number,
  partial = false,
): Promise<BundleHead> {
  if (file.size < HEADER_SIZE)
    throw new UpdateError('UPDATE_ERR_TRUNCATED', 'bundle shorter than its header', { offset: file.size });
  const header = decodeHeader(
    await file.read(0, HEADER_SIZE),
    maxBundleBytes === undefined ? {} : { maxPayload: maxBundleBytes },
  );
  const total = totalLength(header);
  if (partial) {
    if (file.size < payloadAreaOffset(header))
      throw new UpdateError('UPDATE_ERR_TRUNCATED', 'bundle head incomplete', { offset: file.size });
  } else if (file.size < total)
    throw new UpdateError('UPDATE_ERR_TRUNCATED', `bundle is ${file.size} bytes, header says ${total}`, {
      offset: file.size,
    });
  if (file.size > total)
    throw new UpdateError('UPDATE_ERR_OVERSIZED', `bundle has ${file.size - total} bytes after its end`, {
      offset: total,
    });
  if (maxBundleBytes !== undefined && total > maxBundleBytes)
    throw new UpdateError('UPDATE_ERR_OVERSIZED', `bundle above ${maxBundleBytes} bytes`);
  const manifestBytes = await file.read(HEADER_SIZE, header.manifestLength);
  const envelopeBytes = await file.read(HEADER_SIZE + header.manifestLength, header.envelopeLength);
  return {
    header,
    manifestBytes,
    envelopeBytes,
    manifestDigest: createHash('sha256').update(manifestBytes).digest('hex'),
  };
}

export function verifySignature(head: BundleHead, store: TrustStore, floorMs: number): X509Certificate {
  if (head.header.envelopeLength === 0)
    throw new UpdateError('UPDATE_ERR_UNSIGNED', 'bundle carries no signature');
  const env: SignatureEnvelope = decodeEnvelope(head.envelopeBytes, HEADER_SIZE + head.header.manifestLength);
  const leaf = verifyChain(
    env.chain.map((c) => Buffer.from(c, 'base64')),
    store,
    floorMs,
  );
  const keyType = leaf.publicKey.asymmetricKeyType;
  if ((env.alg === 'ed25519') !== (keyType === 'ed25519') || (env.alg === 'es256' && keyType !== 'ec')) {
    throw new UpdateError(
      'UPDATE_ERR_SIGNATURE',
      `envelope alg ${env.alg} does not match the signer key (${String(keyType)})`,
    );
  }
  const data = Buffer.concat([SIGNATURE_DOMAIN, head.manifestBytes]);
  const sig = Buffer.from(env.signature, 'base64');
  const ok =
    env.alg === 'ed25519'
      ? cryptoVerify(null, data, leaf.publicKey, sig)
      : cryptoVerify('sha256', data, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, sig);
  if (!ok)
    throw new UpdateError('UPDATE_ERR_SIGNATURE', 'manifest signature does not verify', {
      offset: HEADER_SIZE,
    });
  return leaf;
}

/** Product, board, downgrade and replay checks on a verified manifest. Pure. */
export function checkPolicy(m: Manifest, p: DevicePolicy): void {
  if (m.product !== p.product)
    throw new UpdateError('UPDATE_ERR_WRONG_PRODUCT', `bundle is for '${m.product}', this is '${p.product}'`);
  if (!m.compatible.includes(p.board))
    throw new UpdateError('UPDATE_ERR_WRONG_BOARD', `bundle is not compatible with board '${p.board}'`);
  if (m.securityVersion < p.securityVersion) {
    throw new UpdateError(
      'UPDATE_ERR_DOWNGRADE',
      `security version ${m.securityVersion} is below the committed ${p.securityVersion}`,
    );
  }
  if (p.usedInstallOrders.includes(m.installOrder))
    throw new UpdateError('UPDATE_ERR_REPLAY', `install order ${m.installOrder} was already used`);
  const types = new Set(m.payloads.map((x) => x.type));
  if (types.has('app') && (types.has('rootfs') || types.has('boot'))) {
    throw new UpdateError(
      'UPDATE_ERR_BAD_MANIFEST',
      'a bundle updates either the app or the system slots, not both',
    );
  }
  const counts = new Map<PayloadType, number>();
  for (const x of m.payloads) counts.set(x.type, (counts.get(x.type) ?? 0) + 1);
  for (const [t, n] of counts)
    if (n > 1) throw new UpdateError('UPDATE_ERR_BAD_MANIFEST', `more than one ${t} payload`);
}

/** Everything up to (not including) the payload hashes. */
export async function verifyHead(
  file: BundleFile,
  store: TrustStore,
  p: DevicePolicy,
  partial = false,
): Promise<VerifiedHead> {
  const head = await readBundleHead(file, p.maxBundleBytes, partial);
  const signer = verifySignature(head, store, timeFloor(p.nowMs, p.lastGoodMs, p.buildTimeMs));
  const manifest = decodeManifest(head.manifestBytes, head.header.payloadLength);
  checkPolicy(manifest, p);
  return { ...head, manifest, signer };
}

export type ChunkSink = (payload: PayloadEntry, index: number, data: Buffer) => Promise<void> | void;

/**
 * Read one payload chunk by chunk, hash each chunk and compare with the signed
 * hash; only then hand it to `sink`. Reads are double-buffered so the disk
 * read of the next chunk overlaps hashing of this one.
 */
export async function streamPayload(
  file: BundleFile,
  head: VerifiedHead,
  payload: PayloadEntry,
  sink?: ChunkSink,
  fromChunk = 0,
): Promise<void> {
  const cs = head.manifest.chunkSize;
  const base = payloadAreaOffset(head.header) + payload.offset;
  const n = payload.chunks.length;
  const bufs = [
    Buffer.allocUnsafe(Math.min(cs, Math.max(payload.size, 1))),
    Buffer.allocUnsafe(Math.min(cs, Math.max(payload.size, 1))),
  ];
  const len = (i: number): number => Math.min(cs, payload.size - i * cs);
  let next: Promise<Buffer> | null =
    fromChunk < n ? file.read(base + fromChunk * cs, len(fromChunk), bufs[fromChunk % 2]) : null;
  for (let i = fromChunk; i < n; i++) {
    const data = await (next as Promise<Buffer>);
    next =
      i + 1 < n ? file.read(base + (i + 1) * cs, len(i + 1), sink ? undefined : bufs[(i + 1) % 2]) : null;
    const got = createHash('sha256').update(data).digest();
    const want = Buffer.from(payload.chunks[i] as string, 'hex');
    if (!timingSafeEqual(got, want)) {
      if (next) await next.catch(() => undefined);
      throw new UpdateError(
        'UPDATE_ERR_HASH',
        `payload '${payload.name}' chunk ${i} does not match the signed hash`,
        {
          offset: base + i * cs,
        },
      );
    }
    if (sink) await sink(payload, i, data);
  }
}

/** The full verification (head + every payload chunk), changing nothing. */
export async function verifyBundleFile(
  path: string,
  store: TrustStore,
  p: DevicePolicy,
  sink?: ChunkSink,
): Promise<VerifiedHead> {
  const file = await BundleFile.open(path);
  try {
    const head = await verifyHead(file, store, p);
    for (const payload of head.manifest.payloads) await streamPayload(file, head, payload, sink);
    return head;
  } finally {
    await file.close();
  }
}

// ---- writing (signing side: CLI, bench, tests) ----

export interface PayloadInput {
  name: string;
  type: PayloadType;
  /** In-memory bytes, or a file path streamed twice (hash pass, copy pass). */
  data?: Buffer;
  path?: string;
}

export interface SignOptions {
  product: string;
  compatible: string[];
  version: string;
  securityVersion: number;
  installOrder: string;
  buildTime?: string;
  chunkSize?: number;
  payloads: PayloadInput[];
  /** Signer key and chain (leaf first, DER); omit both for an unsigned bundle (tests). */
  key?: KeyObject;
  chain?: Buffer[];
}

async function forEachBlock(
  input: PayloadInput,
  size: number,
  cs: number,
  fn: (b: Buffer) => Promise<void> | void,
): Promise<void> {
  if (input.data) {
    for (let o = 0; o < input.data.length; o += cs)
      await fn(input.data.subarray(o, Math.min(o + cs, input.data.length)));
    return;
  }
  const fh = await open(input.path as string, 'r');
  try {
    const buf = Buffer.allocUnsafe(cs);
    for (let o = 0; o < size; o += cs) {
      const want = Math.min(cs, size - o);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, o + got);
        if (bytesRead === 0)
          throw new UpdateError('UPDATE_ERR_TRUNCATED', `${input.path} shrank while signing`);
        got += bytesRead;
      }
      await fn(buf.subarray(0, want));
    }
  } finally {
    await fh.close();
  }
}

export function signManifestBytes(manifestBytes: Buffer, key: KeyObject, chain: Buffer[]): Buffer {
  const data = Buffer.concat([SIGNATURE_DOMAIN, manifestBytes]);
  const ed = key.asymmetricKeyType === 'ed25519';
  const signature = ed
    ? cryptoSign(null, data, key)
    : cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
  return encodeEnvelope({
    alg: ed ? 'ed25519' : 'es256',
    chain: chain.map((c) => c.toString('base64')),
    signature: signature.toString('base64'),
  });
}

/** Build the manifest (hashing every payload) and write a signed bundle to `outPath`. */
export async function writeBundle(outPath: string, o: SignOptions): Promise<Manifest> {
  const cs = o.chunkSize ?? DEFAULT_CHUNK;
  const { stat } = await import('node:fs/promises');
  const entries: PayloadEntry[] = [];
  let offset = 0;
  for (const p of o.payloads) {
    const size = p.data ? p.data.length : (await stat(p.path as string)).size;
    const whole = createHash('sha256');
    const chunks: string[] = [];
    await forEachBlock(p, size, cs, (b) => {
      whole.update(b);
      chunks.push(createHash('sha256').update(b).digest('hex'));
    });
    entries.push({ name: p.name, type: p.type, offset, size, sha256: whole.digest('hex'), chunks });
    offset += size;
  }
  const manifest: Manifest = {
    format: 'qperiph-bundle',
    product: o.product,
    compatible: o.compatible,
    version: o.version,
    securityVersion: o.securityVersion,
    installOrder: o.installOrder,
    buildTime: o.buildTime ?? new Date().toISOString(),
    chunkSize: cs,
    payloads: entries,
  };
  const manifestBytes = encodeManifest(manifest);
  const envelope = o.key && o.chain ? signManifestBytes(manifestBytes, o.key, o.chain) : Buffer.alloc(0);
  const fh = await open(outPath, 'w');
  try {
    let pos = 0;
    const put = async (b: Buffer): Promise<void> => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await put(
      encodeHeader({
        manifestLength: manifestBytes.length,
        envelopeLength: envelope.length,
        payloadLength: offset,
      }),
    );
    await put(manifestBytes);
    await put(envelope);
    for (let i = 0; i < o.payloads.length; i++)
      await forEachBlock(o.payloads[i] as PayloadInput, (entries[i] as PayloadEntry).size, cs, put);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return manifest;
}
